"""`AdapterWorker`: job events in, ComfyUI runs out, outcomes back as job events.

It follows the log with the same runtime as the projectors (rcc.follower: its own
checkpoint, LISTEN/NOTIFY wake-ups, a poll as a safety net, backoff, and a stop before
an event type this version does not know), keeping `adapter_jobs` as its durable
dispatch queue. One adapter leads at a time (a session advisory lock); a second one
waits as a standby and takes over when the leader's connection dies, even after
`kill -9`.

On start it catches up with the log, then reconciles: every open job with a recorded
prompt is asked about on its backend (never submitted twice), every cancelled one
still on a backend is removed, and the rest are queued in creation order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import aiohttp
import asyncpg

from comfy_adapter import health, pool_sync, store
from comfy_adapter.backends import BackendPool
from comfy_adapter.client import BackendError, ComfyClient
from comfy_adapter.config import AdapterSettings
from comfy_adapter.dispatch_choice import next_dispatch
from comfy_adapter.run import METADATA, Context, JobRun, client_id_for, prompt_id_for
from comfy_adapter.waits import wait_event
from rcc.domain.errors import DomainError
from rcc.follower.batch import BatchResult
from rcc.follower.worker import FollowerWorker
from rcc.outputs import OutputStore
from rcc.service.bus import execute
from rcc.service.commands import MarkJob

log = logging.getLogger(__name__)

QUEUE_MARK_CONCURRENCY = 8


def lock_key(name: str) -> int:
    digest = hashlib.sha256(f"rcc.adapter:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
        standby_poll_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.stop_event = stop_event or asyncio.Event()
        self.standby_poll_s = standby_poll_s
        self.client_id = client_id_for(settings.name)
        self.pending: OrderedDict[str, store.JobRow] = OrderedDict()
        self.runs: dict[str, JobRun] = {}
        self.leading = asyncio.Event()
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
        """Lead (or wait to), catch up, reconcile, then follow and dispatch until stopped."""
        lock = await self._lead()
        if lock is None:
            return
        try:
            async with aiohttp.ClientSession() as session:
                await self._serve(session)
        finally:
            with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                await lock.execute("SELECT pg_advisory_unlock($1)", lock_key(self.settings.name))
            with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                await self.pool.release(lock)

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

    async def _lead(self) -> asyncpg.Connection | None:
        """Hold the adapter's lock on a connection of its own; None if stopped first."""
        key = lock_key(self.settings.name)
        while not self.stopping:
            conn = await self.pool.acquire()
            try:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    self.leading.set()
                    return conn
            except BaseException:
                await self.pool.release(conn)
                raise
            await self.pool.release(conn)
            await wait_event(self.stop_event, self.standby_poll_s)
        return None

    # --- following the log -----------------------------------------------------------------

    def _on_batch(self, result: BatchResult) -> None:
        self._apply(store.changes_of(result.decoded))

    def _apply(self, changes: dict[str, store.Change]) -> None:
        """React to a committed batch: new jobs to queue, ended jobs to stop."""
        if not self.caught_up.is_set():
            return  # before reconciliation the table, not the batch, says what to do
        for change in changes.values():
            row = change.row
            if row is not None and row.status in store.OPEN:
                if row.prompt_id:  # submitted by an earlier life, seen only now
                    self._resume(row)
                else:
                    self._to_queue.append(row)
                    self._wake_queue.set()
            if change.status in store.TERMINAL:
                self._ended(change.job_id, change.status)

    def _ended(self, job_id: str, status: str) -> None:
        self.pending.pop(job_id, None)
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
        async with self.pool.acquire() as conn:
            open_rows = await store.open_jobs(conn)
            leftovers = await store.uncleaned_jobs(conn)
        for row in open_rows:
            if row.prompt_id:
                self._resume(row)
            else:
                self._to_queue.append(row)
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
        """Mark new jobs queued (in creation order) and hand them to the dispatcher."""
        while not self.stopping:
            await self._wake_queue.wait()
            self._wake_queue.clear()
            while self._to_queue:
                chunk = self._to_queue[:QUEUE_MARK_CONCURRENCY]
                del self._to_queue[:QUEUE_MARK_CONCURRENCY]
                marked = await asyncio.gather(*(self._mark_queued(row) for row in chunk))
                for row, ok in zip(chunk, marked, strict=True):
                    if ok:
                        self.pending[row.job_id] = row
                self._wake_dispatch.set()
                self._wake_status.set()

    async def _mark_queued(self, row: store.JobRow) -> bool:
        if row.status != "created":
            return True
        moved = await execute(
            self.pool, MarkJob(job_id=row.job_id, status="queued"), metadata=METADATA
        )
        if isinstance(moved, DomainError):
            # Someone moved it first: queued is fine, an ended job is not ours to run.
            return getattr(moved, "status", "") in ("queued", "running")
        row.status = "queued"
        return True

    async def _dispatch(self, ctx: Context) -> None:
        """Give each waiting job, oldest first, to a backend with a free slot."""
        while not self.stopping:
            await self._wake_dispatch.wait()
            self._wake_dispatch.clear()
            while (
                picked := next_dispatch(self.pending, ctx.backends, self.settings.job_type_tags)
            ) is not None:
                row, backend = picked
                del self.pending[row.job_id]
                backend.in_flight.add(row.job_id)
                self._start(ctx, row, backend)
            self._wake_status.set()

    def _start(self, ctx: Context, row: store.JobRow, backend: Any) -> None:
        run = JobRun(ctx, row, backend)
        self.runs[row.job_id] = run
        task = asyncio.create_task(self._run(run), name=f"job {row.job_id}")
        self._run_tasks[row.job_id] = task

    async def _run(self, run: JobRun) -> None:
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: run failed; it is followed again on restart", run.job_id)
        finally:
            run.backend.in_flight.discard(run.job_id)
            self.runs.pop(run.job_id, None)
            self._run_tasks.pop(run.job_id, None)
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
