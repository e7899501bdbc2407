"""One job's run on ComfyUI: submit once, follow to the end, record the outcome.

Submission is idempotent: the prompt id is derived from the job id and recorded on the
job (JobPromptSubmitted) before POST /prompt. Whoever finds a recorded prompt (a
restarted adapter, a second dispatcher) asks that backend's /queue, then /history,
and only submits when the backend has never seen the prompt. The websocket is the
fast path; /queue and /history are the truth, asked after every reconnect, at the
end of the prompt (`executing` with node null) and every `poll_s` while quiet.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import msgspec

from comfy_adapter import protocol as p
from comfy_adapter.backends import RECONNECTED, Backend, BackendPool, Reconnected, Signal
from comfy_adapter.client import BackendError, OutputMissing, OutputTooLarge, Unreachable
from comfy_adapter.config import AdapterSettings
from comfy_adapter.logs import RunLog
from comfy_adapter.output_usage import usage_of
from comfy_adapter.store import JobRow, fill_workflows, mark_cleaned
from comfy_adapter.uploads import UploadGone, send_uploads
from comfy_adapter.waits import get_within
from rcc.domain.errors import DomainError, IllegalTransition
from rcc.outputs import OutputStore, with_attempt_prefix
from rcc.service.bus import execute
from rcc.service.commands import (
    Command,
    MarkJob,
    RecordExecutionLog,
    RecordPrompt,
    RecordPromptLost,
)
from rcc.service.handlers import Done

log = logging.getLogger(__name__)

PROMPT_NAMESPACE = uuid.UUID("5b0f3f7e-3c1a-4d2e-9a55-7c0c0ffee006")
METADATA = {"actor": "comfy_adapter", "via": "adapter"}


def prompt_id_for(job_id: str, attempt: int = 1) -> str:
    """The prompt id of a job's attempt: the same in every process and after every
    restart (a prompt lost by a restarted ComfyUI is submitted again under the next)."""
    if attempt == 1:
        return str(uuid.uuid5(PROMPT_NAMESPACE, f"rcc-job:{job_id}"))
    return str(uuid.uuid5(PROMPT_NAMESPACE, f"rcc-job:{job_id}:{attempt}"))


class Ended:
    """A signal to a run: its job ended elsewhere (cancelled), with that status."""

    def __init__(self, status: str) -> None:
        self.status = status


class Stop(Exception):
    """The run is over (its outcome, if any, is recorded)."""


class NextAttempt(Exception):
    """The backend lost the prompt; the job's next attempt is recorded: submit it."""


@dataclass
class Context:
    pool: asyncpg.Pool
    settings: AdapterSettings
    backends: BackendPool
    outputs: OutputStore
    client_id: str


class JobRun:
    """Drives one job from submission (or reconciliation) to its recorded outcome."""

    def __init__(self, ctx: Context, row: JobRow, backend: Backend) -> None:
        self.ctx = ctx
        self.row = row
        self.backend = backend
        self.prompt_id = row.prompt_id or prompt_id_for(row.job_id, row.attempt)
        self.inbox: asyncio.Queue[Signal | Ended] = asyncio.Queue()
        self.log = RunLog(row.workflow or {})
        self.running = row.status == "running"
        self.ended: Ended | None = None
        self.accepted = False  # a POST /prompt of ours was accepted in this process
        self.finished = False
        self.finished_cleanly = False  # the outcome is recorded (or the job ended elsewhere)
        self._flushed_at = time.monotonic()
        elapsed = 0.0
        if row.submitted_at is not None:
            elapsed = max(0.0, (datetime.now(UTC) - row.submitted_at).total_seconds())
        self.deadline = time.monotonic() + ctx.settings.timeout_for(row.job_type) - elapsed

    @property
    def job_id(self) -> str:
        return self.row.job_id

    def end_elsewhere(self, status: str) -> None:
        """The job reached `status` through someone else (a cancel): stop and clean up."""
        if not self.finished:
            self.ended = Ended(status)
            self.inbox.put_nowait(self.ended)

    async def run(self) -> None:
        """Submit (or take over) the job and follow it to its outcome, attempt by attempt."""
        try:
            if self.row.prompt_id is not None:
                self._attach()
                self.log.adapter("reconcile", f"following prompt {self.prompt_id} after a restart")
            while True:
                try:
                    if self.row.prompt_id is None:
                        await self._dispatch()
                    else:
                        await self._follow(probe_first=True)
                except NextAttempt:
                    continue
        except Stop:
            self.finished_cleanly = True
        finally:
            self.finished = True
            self.backend.untrack(self.prompt_id)
            if self.log.lines:
                await self._flush_log()

    # --- submission --------------------------------------------------------------------

    def _attach(self) -> None:
        self.backend.track(self.prompt_id, self.inbox)

    async def _dispatch(self) -> None:
        recorded = await self._execute(
            RecordPrompt(
                job_id=self.job_id,
                backend=self.backend.url,
                prompt_id=self.prompt_id,
                client_id=self.ctx.client_id,
            )
        )
        if isinstance(recorded, DomainError):
            raise Stop  # ended (cancelled) before it was submitted: nothing to do
        result = recorded.result
        if not result["new"]:  # recorded earlier (a previous life): ask, do not resubmit
            self.prompt_id = str(result["prompt_id"])
            found = self.ctx.backends.get(str(result["backend"]))
            if found is not None and found is not self.backend:
                self.backend.in_flight.discard(self.job_id)
                found.in_flight.add(self.job_id)
                self.backend = found
            self.row.prompt_id = self.prompt_id
            self._attach()
            self.log.adapter(
                "reconcile", f"prompt {self.prompt_id} was recorded earlier; asking, not submitting"
            )
            await self._follow(probe_first=True)
            return
        self.row.submitted_at = datetime.now(UTC)
        self.row.prompt_id = self.prompt_id
        self._attach()
        accepted = await self._submit()
        await self._follow(probe_first=not accepted)

    async def _workflow(self) -> dict[str, Any]:
        """The prompt to submit. A row folded from a batch names a new job's workflow by
        its digest (workflow_blobs): the body is fetched here, right before it is needed,
        whichever way the run began (dispatch, reconciliation, a resubmission)."""
        if not self.row.workflow and self.row.workflow_digest:
            async with self.ctx.pool.acquire() as conn:
                await fill_workflows(conn, [self.row])
            self.log.workflow = self.row.workflow or {}
        return with_attempt_prefix(self.row.workflow or {}, self.job_id, self.row.attempt)

    async def _submit(self) -> bool:
        """POST /prompt, retrying a backend that does not answer. True when accepted;
        False when the answer is unknown (the follow loop asks /queue and /history)."""
        workflow = await self._workflow()
        settings = self.ctx.settings
        last = ""
        for attempt in range(1, settings.retries + 1):
            if self.ended is not None and not self.accepted:
                self.log.adapter(self.ended.status, f"job {self.ended.status} before submission")
                raise Stop  # cancelled before ComfyUI got it: nothing to take back
            try:
                await self._send_uploads(workflow)  # h4: before the prompt that names them
                answer = await self.backend.client.submit(
                    workflow,
                    client_id=self.ctx.client_id,
                    prompt_id=self.prompt_id,
                    extra_data={"rcc_job_id": self.job_id},
                )
            except Unreachable as error:
                last = str(error)
                self.ctx.backends.force_reconnect(self.backend, last)
                self.log.adapter(
                    "backend_unreachable",
                    f"{self.backend.url} did not answer (attempt {attempt}/{settings.retries}): "
                    f"{last}",
                )
                await self._pause(attempt)
                continue
            except BackendError as error:
                self.log.adapter("submit_unknown", f"POST /prompt gave no clear answer: {error}")
                return False
            if isinstance(answer, p.PromptRefused):
                text = p.refusal_text(answer)
                self.log.add("validation_error", text)
                await self._fail(f"ComfyUI refused the prompt: {text}")
            self.accepted = True
            self.log.adapter("accepted", f"ComfyUI queued the prompt as number {answer.number}")
            if answer.node_errors:
                skipped = p.node_errors_text(answer.node_errors)
                self.log.add("validation_warning", f"only valid outputs run; {skipped}")
            return True  # queued in ComfyUI: `running` waits for its execution_start
        await self._fail(
            f"ComfyUI backend {self.backend.url} did not answer after {settings.retries} "
            f"attempts: {last}"
        )
        return False  # unreachable: _fail raised Stop

    async def _send_uploads(self, workflow: dict[str, Any]) -> None:
        try:
            sent = await send_uploads(self.backend.client, self.ctx.settings.uploads_dir, workflow)
        except UploadGone as error:
            await self._fail(str(error))
        if sent:
            self.log.adapter("uploaded", f"sent {sent} upload(s) to {self.backend.url}")

    # --- following -----------------------------------------------------------------------

    async def _follow(self, *, probe_first: bool) -> None:
        settings = self.ctx.settings
        need_probe = probe_first
        failures = 0
        while True:
            if need_probe:
                need_probe = False
                try:
                    await self._probe()
                    failures = 0
                except BackendError as error:
                    failures += 1
                    self.log.adapter(
                        "backend_unreachable",
                        f"{self.backend.url} did not answer (attempt {failures}/"
                        f"{settings.retries}): {error}",
                    )
                    if failures >= settings.retries:
                        await self._fail(
                            f"ComfyUI backend {self.backend.url} did not answer after "
                            f"{settings.retries} attempts: {error}"
                        )
                    need_probe = True
                    await self._pause(failures)
                    continue
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                await self._timeout()
            if self.log.lines and time.monotonic() - self._flushed_at > settings.log_flush_s:
                await self._flush_log()
            signal = await self._next(min(remaining, settings.poll_s))
            match signal:
                case None:
                    need_probe = True
                case Ended():
                    await self._cleanup(signal.status)
                case Reconnected():
                    self.log.adapter("reconnected", "websocket reconnected; asking /history")
                    need_probe = True
                case p.Executing(node=None):
                    need_probe = True
                case p.ExecutionStart() | p.Executing():
                    self.log.message(signal)
                    await self._mark_running()
                case _:
                    self.log.message(signal)

    async def _next(self, timeout: float) -> Signal | Ended | None:  # noqa: ASYNC109
        return await get_within(self.inbox, timeout)

    async def _pause(self, attempt: int) -> None:
        """Back off before asking again; a cancel cuts the pause short."""
        settings = self.ctx.settings
        delay = min(settings.retry_base_s * 2 ** (attempt - 1), settings.retry_max_s)
        signal = await self._next(delay)
        if isinstance(signal, Ended):
            await self._cleanup(signal.status)
        if signal is RECONNECTED:
            return

    async def _probe(self) -> None:
        """Ask the backend where the prompt is: queued or running (keep following),
        finished (record the outcome), or unknown (never arrived: submit it now)."""
        client = self.backend.client
        # /queue before /history: ComfyUI writes the history entry before it takes the
        # prompt off the running list, so a prompt is always in one or the other.
        where = (await client.queue()).where(self.prompt_id)
        if where is not None:
            if where == "running":
                await self._mark_running()
            return
        entry = await client.history(self.prompt_id)
        if entry is not None:
            await self._finish(entry)
        await self._lost()

    async def _lost(self) -> NoReturn:
        """The backend does not know the recorded prompt: ComfyUI restarted (queue and
        history live in its memory), or the prompt never arrived (a crash between
        recording and posting). Either way nothing runs under that id, so the job is
        submitted again as its next attempt, up to `max_attempts`, then failed."""
        url, limit = self.backend.url, self.ctx.settings.max_attempts
        if self.row.attempt >= limit:
            await self._fail(
                f"the GPU server {url} restarted and lost this job's prompt; gave up after "
                f"{limit} attempts (the reserved credits are released)"
            )
        reason = f"{url} knows no prompt {self.prompt_id} (restarted, or it never arrived)"
        recorded = await self._execute(
            RecordPromptLost(job_id=self.job_id, prompt_id=self.prompt_id, reason=reason)
        )
        if isinstance(recorded, DomainError) or not recorded.result["new"]:
            raise Stop  # ended meanwhile, or another run already moved on
        self.log.adapter(
            "resubmit", f"{reason}; submitting attempt {recorded.result['attempt']} of {limit}"
        )
        self.backend.untrack(self.prompt_id)
        self.accepted = False
        self.row.attempt = int(recorded.result["attempt"])
        self.row.prompt_id = self.row.submitted_at = None
        self.prompt_id = prompt_id_for(self.job_id, self.row.attempt)
        raise NextAttempt

    # --- outcomes ------------------------------------------------------------------------

    async def _finish(self, entry: p.HistoryEntry) -> NoReturn:
        self._log_history(entry)
        if entry.status.status_str == "success":
            uris, paths = await self._download(entry)
            await self._mark_running()
            await self._flush_log()
            await self._close(
                MarkJob(
                    job_id=self.job_id,
                    status="succeeded",
                    output_uris=uris,
                    duration_ms=_duration_ms(entry),
                    usage=usage_of(paths),  # a metered price captures by what was made
                )
            )
        error = entry.message("execution_error")
        interrupted = entry.message("execution_interrupted")
        if error is not None:
            text = p.execution_error_text(error)
        elif interrupted is not None:
            text = p.interrupted_text(interrupted)
        else:
            text = f"ComfyUI ended the prompt with status {entry.status.status_str!r}"
        await self._fail(text)

    def _log_history(self, entry: p.HistoryEntry) -> None:
        """After a reconnect or a restart the live messages are gone: log history's."""
        logged = {line.kind for line in self.log.lines}
        for name, data in entry.status.messages:
            if name in logged:
                continue
            try:
                message = p.parse_message(msgspec.json.encode({"type": name, "data": data}))
            except ValueError:
                continue
            self.log.message(message)

    async def _download(self, entry: p.HistoryEntry) -> tuple[list[str], list[Path]]:
        """Fetch the outputs into the store: their URIs and the local files."""
        files = p.output_files(entry.outputs)
        settings = self.ctx.settings
        taken: set[str] = set()
        uris: list[str] = []
        paths: list[Path] = []
        for _, ref in files:
            target = self.ctx.outputs.new_path(self.job_id, ref.filename, ref.subfolder, taken)
            for attempt in range(1, settings.retries + 1):
                try:
                    await self.backend.client.download(
                        ref, target, max_bytes=settings.max_output_bytes
                    )
                    break
                except (OutputMissing, OutputTooLarge) as error:
                    await self._fail(f"output {ref.filename!r} could not be fetched: {error}")
                except BackendError as error:
                    if attempt == settings.retries:
                        await self._fail(
                            f"output {ref.filename!r} could not be fetched from "
                            f"{self.backend.url}: {error}"
                        )
                    await self._pause(attempt)
            uris.append(self.ctx.outputs.uri(self.job_id, target.name))
            paths.append(target)
        if self.row.attempt > 1 and (orphans := self.ctx.outputs.remove_others(self.job_id, taken)):
            self.log.adapter("outputs", f"removed {orphans} file(s) of earlier attempts")
        self.log.adapter("outputs", f"stored {len(uris)} output file(s)")
        return uris, paths

    async def _timeout(self) -> NoReturn:
        limit = self.ctx.settings.timeout_for(self.row.job_type)
        self.log.adapter("timeout", f"no result within {limit:g} s; interrupting the prompt")
        removed = await self._remove()
        await self._flush_log()
        note = "the prompt was interrupted on ComfyUI" if removed else "ComfyUI did not answer"
        await self._close(
            MarkJob(
                job_id=self.job_id,
                status="failed",
                error=f"timed out after {limit:g} s ({self.row.job_type}); {note}",
            ),
            cleaned=removed,
        )

    async def _cleanup(self, status: str) -> NoReturn:
        """The job ended elsewhere (cancelled): take its prompt off ComfyUI."""
        removed = await self._remove()
        if removed:
            self.log.adapter(
                status, f"job {status}: prompt removed from ComfyUI's queue or interrupted"
            )
            async with self.ctx.pool.acquire() as conn:
                await mark_cleaned(conn, [self.job_id])
        raise Stop

    async def _remove(self) -> bool:
        """Delete the prompt if it waits in ComfyUI's queue, interrupt it if it runs."""
        client = self.backend.client
        try:
            await client.delete([self.prompt_id])
            await client.interrupt(self.prompt_id)
        except BackendError as error:
            self.log.adapter("backend_unreachable", f"could not remove the prompt: {error}")
            return False
        return True

    async def _mark_running(self) -> None:
        if self.running:
            return
        moved = await self._execute(
            MarkJob(
                job_id=self.job_id,
                status="running",
                backend=self.backend.url,
                prompt_id=self.prompt_id,
            )
        )
        if isinstance(moved, IllegalTransition) and moved.status not in {"running"}:
            await self._cleanup(moved.status)  # cancelled while we submitted
        self.running = True

    async def _fail(self, error: str) -> NoReturn:
        await self._flush_log()
        await self._close(MarkJob(job_id=self.job_id, status="failed", error=error))

    async def _close(self, mark: MarkJob, *, cleaned: bool = True) -> NoReturn:
        """Record the job's end (a job already ended elsewhere refuses: that is fine)."""
        moved = await self._execute(mark)
        if isinstance(moved, DomainError) and not isinstance(moved, IllegalTransition):
            log.error("could not record %s for job %s: %s", mark.status, self.job_id, moved)
        if cleaned:
            async with self.ctx.pool.acquire() as conn:
                await mark_cleaned(conn, [self.job_id])
        raise Stop

    async def _flush_log(self) -> None:
        self._flushed_at = time.monotonic()
        lines = self.log.take()
        if lines:
            await self._execute(
                RecordExecutionLog(job_id=self.job_id, prompt_id=self.prompt_id, lines=lines)
            )

    async def _execute(self, command: Command) -> Done | DomainError:
        return await execute(self.ctx.pool, command, metadata=METADATA)


def _duration_ms(entry: p.HistoryEntry) -> int | None:
    """ComfyUI's own execution time: execution_start to execution_success."""
    start, end = entry.message("execution_start"), entry.message("execution_success")
    if not start or not end:
        return None
    first, last = start.get("timestamp"), end.get("timestamp")
    if not isinstance(first, int) or not isinstance(last, int):
        return None
    return max(0, last - first)
