"""`AdapterWorker`: job events in, ComfyUI runs out, outcomes back as job events.

It follows the log with the same runtime as the projectors (rcc.follower: one shared
checkpoint, LISTEN/NOTIFY wake-ups, a poll as a safety net, backoff, and a stop before
an event type this version does not know), keeping `adapter_jobs` as the durable
dispatch queue. Any number of adapters run side by side: whichever holds the feed's
lock for a batch folds it, and each claims jobs from the queue with a lease
(leases.py) in the fair order (queue_order.py), renews its leases with its heartbeat,
and takes over the jobs of an adapter whose leases ran out (after `kill -9` too),
asking their backend about a recorded prompt before it submits anything.

Each process has its own websocket client id (ComfyUI keeps one socket per client id:
two processes sharing one would steal each other's messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
import asyncpg

from comfy_adapter import health, leases, pool_sync, store
from comfy_adapter.backends import BackendPool
from comfy_adapter.client import BackendError, ComfyClient
from comfy_adapter.config import AdapterSettings
from comfy_adapter.run import METADATA, Context, JobRun, prompt_id_for
from comfy_adapter.waits import wait_event
from rcc.follower.batch import BatchResult
from rcc.follower.worker import FollowerWorker
from rcc.outputs import OutputStore
from rcc.service.bus import execute
from rcc.service.commands import MarkJob

log = logging.getLogger(__name__)

QUEUE_MARK_CONCURRENCY = 8
DB_ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)


class AdapterWorker:
    """Runs jobs on ComfyUI: `run()` until `stop()` (or the stop event) is set."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: AdapterSettings,
        *,
        stop_event: asyncio.Event | None = None,
        batch_size: int = 1000,
        feed_poll_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.stop_event = stop_event or asyncio.Event()
        self.me = leases.Instance.new()
        self.client_id = self.me.client_id
        self.runs: dict[str, JobRun] = {}
        self.caught_up = asyncio.Event()
        self._to_queue: list[store.JobRow] = []
        self._wake_queue = asyncio.Event()
        self._wake_dispatch = asyncio.Event()
        self._wake_status = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._run_tasks: dict[str, asyncio.Task[None]] = {}
        # At-least-once towards ComfyUI: a batch replayed after a crash finds its jobs
        # already in adapter_jobs, and a recorded prompt is asked about, never resubmitted.
        self.feed = FollowerWorker(
            pool,
            [store.JobFeed(store.feed_name(settings.name))],
            kind="subscriber",
            label="adapter",
            batch_size=batch_size,
            poll_interval=feed_poll_s,
            stop_event=self.stop_event,
            on_batch=self._on_batch,
        )
        self.backends: BackendPool | None = None
        self._ctx: Context | None = None

    def stop(self) -> None:
        """Stop dispatching; runs in flight are left to the next start's reconciliation."""
        self.feed.stop()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    # --- the life of the worker ------------------------------------------------------------

    async def run(self) -> None:
        """Register, catch up, then follow, claim and dispatch until stopped."""
        async with self.pool.acquire() as conn:
            await leases.register(conn, self.me)
        try:
            async with aiohttp.ClientSession() as session:
                await self._serve(session)
        finally:
            with contextlib.suppress(*DB_ERRORS):
                async with self.pool.acquire() as conn:
                    await leases.retire(conn, self.me)

    async def _serve(self, session: aiohttp.ClientSession) -> None:
        settings = self.settings

        def make_client(url: str) -> ComfyClient:
            return ComfyClient(url, session, request_timeout=settings.request_timeout_s)

        self.backends = BackendPool(
            [],
            slots=settings.slots,
            client_id=self.client_id,
            reconnect_max_s=settings.reconnect_max_s,
            on_change=self._backends_changed,
        )
        # The GPU pool as data (pool_sync): COMFYUI_URLS only seeds an untouched pool.
        await pool_sync.seed(self.pool, settings)
        pool_sync.apply(self.backends, await pool_sync.wanted(self.pool), make_client)
        ctx = self._ctx = Context(
            self.pool, settings, self.backends, OutputStore(settings.outputs_dir), self.client_id
        )
        self.backends.start()
        try:
            await self.feed.drain()
            await self._reconcile(ctx)
            self.caught_up.set()
            self._spawn(self.feed.run())
            self._spawn(self._queue_jobs())
            self._spawn(self._dispatch(ctx))
            self._spawn(self._heartbeat())
            self._spawn(self._follow_pool(make_client))
            self._spawn(self._renew_leases())
            await self.stop_event.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self.feed.stop()  # loops end even if a cancellation went astray
        for task in [*self._tasks, *self._run_tasks.values()]:
            task.cancel()
        for task in [*self._tasks, *self._run_tasks.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._run_tasks.clear()
        self.runs.clear()
        if self.backends is not None:
            await self.backends.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- following the log -----------------------------------------------------------------

    def _on_batch(self, result: BatchResult) -> None:
        self._apply(store.changes_of(result.decoded))

    def _apply(self, changes: dict[str, store.Change]) -> None:
        """React to a batch this process folded: new jobs to mark queued, ended jobs to
        stop (batches folded by another adapter reach our runs through the leases)."""
        if not self.caught_up.is_set():
            return  # before reconciliation the table, not the batch, says what to do
        for change in changes.values():
            row = change.row
            if row is not None and row.status == "created":
                self._to_queue.append(row)
                self._wake_queue.set()
            if change.status in store.TERMINAL:
                self._ended(change.job_id, change.status)
        self._wake_dispatch.set()

    def _ended(self, job_id: str, status: str) -> None:
        run = self.runs.get(job_id)
        if run is not None:
            run.end_elsewhere(status)

    async def _sleep(self, wake: asyncio.Event, seconds: float) -> None:
        if self.stopping:
            return
        await wait_event(wake, seconds)
        wake.clear()

    # --- reconciliation --------------------------------------------------------------------

    async def _reconcile(self, ctx: Context) -> None:
        """On start: mark jobs nobody marked yet queued, and take ended jobs' prompts off
        their backends. Open jobs with a prompt are taken over through their leases."""
        async with self.pool.acquire() as conn:
            open_rows = await store.open_jobs(conn)
            leftovers = await store.uncleaned_jobs(conn)
        self._to_queue.extend(row for row in open_rows if row.status == "created")
        self._wake_queue.set()
        for row in leftovers:
            self._spawn(self._remove_leftover(ctx, row))

    def _resume(self, row: store.JobRow) -> None:
        """Follow a job whose prompt is recorded: ask its backend, never submit blindly."""
        assert self._ctx is not None
        if row.job_id in self.runs:
            return
        backend = self._ctx.backends.get(row.backend or "")
        if backend is None:
            self._spawn(self._fail_unknown_backend(row))
            return
        backend.in_flight.add(row.job_id)
        self._start(self._ctx, row, backend)

    async def _fail_unknown_backend(self, row: store.JobRow) -> None:
        await execute(
            self.pool,
            MarkJob(
                job_id=row.job_id,
                status="failed",
                error=f"ComfyUI backend {row.backend} is no longer in the GPU pool; "
                f"prompt {row.prompt_id} was not followed",
            ),
            metadata=METADATA,
        )

    async def _remove_leftover(self, ctx: Context, row: store.JobRow) -> None:
        """A job ended while its prompt may still sit on a backend: delete or interrupt it."""
        backend = ctx.backends.get(row.backend or "")
        if backend is None or not row.prompt_id:
            return
        for attempt in range(self.settings.retries):
            try:
                await backend.client.delete([row.prompt_id])
                await backend.client.interrupt(row.prompt_id)
            except BackendError:
                await asyncio.sleep(min(self.settings.retry_base_s * 2**attempt, 5.0))
                continue
            async with self.pool.acquire() as conn:
                await store.mark_cleaned(conn, [row.job_id])
            return

    # --- queueing and dispatch ---------------------------------------------------------------

    async def _queue_jobs(self) -> None:
        """Mark new jobs queued: accepted, waiting for a GPU (in creation order)."""
        while not self.stopping:
            await self._wake_queue.wait()
            self._wake_queue.clear()
            while self._to_queue:
                chunk = self._to_queue[:QUEUE_MARK_CONCURRENCY]
                del self._to_queue[:QUEUE_MARK_CONCURRENCY]
                await asyncio.gather(*(self._mark_queued(row) for row in chunk))
                self._wake_status.set()

    async def _mark_queued(self, row: store.JobRow) -> None:
        # A refusal means someone moved it first (another adapter, a dispatch, a cancel).
        await execute(self.pool, MarkJob(job_id=row.job_id, status="queued"), metadata=METADATA)

    async def _dispatch(self, ctx: Context) -> None:
        """Claim work from the shared queue for the free slots, and run it: jobs whose
        lease ran out (reconciled first), then waiting jobs in the fair order."""
        while not self.stopping:
            try:
                async with self.pool.acquire() as conn:
                    claimed = await leases.claim(
                        conn,
                        self.me,
                        capacity=ctx.backends.capacity(),
                        tags=ctx.backends.tags(),
                        job_type_tags=self.settings.job_type_tags,
                        max_running=self.settings.max_running_per_user,
                        lease_s=self.settings.lease_s,
                    )
            except DB_ERRORS as error:
                log.warning("adapter claim failed: %s", error)
                claimed = leases.Claimed()
            for row in claimed.adopted:
                self._resume(row)
            for row, url in claimed.new:
                backend = ctx.backends.get(url)
                if backend is None or row.job_id in self.runs:
                    continue
                backend.in_flight.add(row.job_id)
                self._start(ctx, row, backend)
            if claimed.new or claimed.adopted:
                self._wake_status.set()
                continue  # there may be more: look again at once
            await self._sleep(self._wake_dispatch, self.settings.claim_poll_s)

    def _start(self, ctx: Context, row: store.JobRow, backend: Any) -> None:
        run = JobRun(ctx, row, backend)
        self.runs[row.job_id] = run
        task = asyncio.create_task(self._run(run), name=f"job {row.job_id}")
        self._run_tasks[row.job_id] = task

    async def _run(self, run: JobRun) -> None:
        try:
            if run.row.status == "created":
                # The claim can reach a job before the queue marker does: mark it queued
                # first, so its history always reads created, queued, then submitted.
                await self._mark_queued(run.row)
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: run failed; it is followed again on restart", run.job_id)
        finally:
            run.backend.in_flight.discard(run.job_id)
            self.runs.pop(run.job_id, None)
            self._run_tasks.pop(run.job_id, None)
            if run.finished_cleanly:  # else the lease runs out and someone takes over
                with contextlib.suppress(*DB_ERRORS):
                    async with self.pool.acquire() as conn:
                        await leases.release(conn, self.me, run.job_id)
            self._wake_dispatch.set()

    def _backends_changed(self) -> None:
        self._wake_dispatch.set()
        self._wake_status.set()

    async def _follow_pool(self, make_client: pool_sync.MakeClient) -> None:
        """Admins' changes to the GPU pool, and each backend's health (docs/BACKENDS.md)."""
        assert self.backends is not None
        settings, changed = self.settings, asyncio.Event()
        await asyncio.gather(
            pool_sync.follow(
                self.pool,
                self.backends,
                make_client,
                self.stop_event,
                settings.pool_refresh_s,
                changed,
            ),
            health.watch(
                self.pool,
                self.backends,
                settings.name,
                settings.job_type_tags,
                self.stop_event,
                settings.health_s,
                changed,
            ),
        )

    # --- leases and heartbeat ----------------------------------------------------------------

    async def _renew_leases(self) -> None:
        """Keep the leases of our runs; stop a run whose job ended (a cancel folded by
        another adapter) or whose lease was lost (we were too slow: someone took over)."""
        every = self.settings.lease_s / 3
        while not self.stopping:
            held = list(self.runs)
            try:
                async with self.pool.acquire() as conn:
                    statuses = await leases.heartbeat(conn, self.me, held, self.settings.lease_s)
            except DB_ERRORS as error:
                log.warning("adapter lease renewal failed: %s", error)
                statuses = None
            for job_id in held if statuses is not None else []:
                status = statuses.get(job_id) if statuses is not None else None
                run = self.runs.get(job_id)
                if run is None:
                    continue
                if status is None:
                    log.warning("job %s: lease lost; another adapter follows it", job_id)
                    task = self._run_tasks.get(job_id)
                    if task is not None:
                        task.cancel()
                elif status in store.TERMINAL:
                    run.end_elsewhere(status)
            await wait_event(self.stop_event, every)

    # --- heartbeat ---------------------------------------------------------------------------

    def waiting_reason(self) -> str:
        assert self.backends is not None
        return self.backends.waiting_reason()

    async def _heartbeat(self) -> None:
        assert self.backends is not None
        while not self.stopping:
            try:
                async with self.pool.acquire() as conn:
                    await store.write_status(
                        conn,
                        self.settings.name,
                        [b.describe() for b in self.backends.backends],
                        self.waiting_reason(),
                    )
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("adapter heartbeat failed: %s", error)
            await self._sleep(self._wake_status, self.settings.heartbeat_s)


__all__ = ["AdapterWorker", "prompt_id_for"]
