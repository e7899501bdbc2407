"""Execution logs: what ComfyUI reported about a job's run, and what the adapter did.

The adapter gathers lines while it follows a run and records them on the job's stream
(JobExecutionLogged); `job_log` reads a job's stream back as one timeline for the
owner and admins (GET /jobs/{id}/logs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from comfy_adapter import protocol as p
from rcc.domain.events import (
    ExecutionLogLine,
    JobCancelled,
    JobCreated,
    JobExecutionLogged,
    JobFailed,
    JobPromptSubmitted,
    JobQueued,
    JobStarted,
    JobSucceeded,
    job_stream,
)
from rcc.store.event_store import read_stream

MAX_DETAIL = 2000  # a traceback is cut to this many characters


def now() -> datetime:
    return datetime.now(UTC)


class RunLog:
    """Lines of one run, held until the adapter records them."""

    def __init__(self, workflow: dict[str, Any]) -> None:
        self.workflow = workflow
        self.lines: list[ExecutionLogLine] = []
        self._quarters: dict[str, int] = {}

    def add(
        self, kind: str, message: str, *, node: str | None = None, source: str = "comfyui"
    ) -> None:
        self.lines.append(
            ExecutionLogLine(at=now(), kind=kind, message=message, node=node, source=source)
        )

    def adapter(self, kind: str, message: str) -> None:
        self.add(kind, message, source="adapter")

    def take(self) -> list[ExecutionLogLine]:
        taken, self.lines = self.lines, []
        return taken

    def class_of(self, node: str | None) -> str:
        entry = self.workflow.get(node or "")
        found = entry.get("class_type") if isinstance(entry, dict) else None
        return str(found) if found else "?"

    def message(self, message: p.Message) -> None:
        """Note a websocket message worth keeping (status and progress_state are not)."""
        match message:
            case p.ExecutionStart():
                self.add("execution_start", "ComfyUI started the prompt")
            case p.ExecutionCached(nodes=nodes) if nodes:
                self.add("execution_cached", f"cached nodes: {', '.join(nodes)}")
            case p.Executing(node=node) if node is not None:
                self.add("executing", f"node {node} ({self.class_of(node)}) running", node=node)
            case p.Progress():
                self._progress(message)
            case p.Executed(node=node, output=output):
                files = [ref.filename for _, ref in p.output_files({node: output})]
                shown = f": {', '.join(files)}" if files else ""
                self.add(
                    "executed", f"node {node} ({self.class_of(node)}) output{shown}", node=node
                )
            case p.ExecutionSuccess():
                self.add("execution_success", "ComfyUI finished the prompt")
            case p.ExecutionError():
                self.add(
                    "execution_error",
                    p.execution_error_text(msgspec.to_builtins(message)),
                    node=message.node_id,
                )
                if message.traceback:
                    self.add(
                        "traceback", "".join(message.traceback)[-MAX_DETAIL:], node=message.node_id
                    )
            case p.ExecutionInterrupted():
                self.add(
                    "execution_interrupted",
                    p.interrupted_text(msgspec.to_builtins(message)),
                    node=message.node_id,
                )

    def _progress(self, message: p.Progress) -> None:
        node = message.node or "?"
        if message.max <= 0:
            return
        # Steps are 0..max-1 for some nodes and 1..max for others: log each quarter once.
        quarter = min(4, int(4 * (message.value + 1) / message.max))
        if quarter > self._quarters.get(node, 0):
            self._quarters[node] = quarter
            self.add(
                "progress",
                f"node {node} ({self.class_of(node)}) step {message.value:g} of {message.max:g}",
                node=node,
            )


# --- reading a job's log ---------------------------------------------------------------


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    source: str  # rcc (the job's lifecycle), adapter, or comfyui
    kind: str
    message: str
    node: str | None = None


class JobLog(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    prompt_id: str | None
    backend: str | None
    lines: list[LogLine]


def _lifecycle(event: Any) -> tuple[str, str] | None:
    match event:
        case JobCreated():
            return "created", f"{event.job_type} created, {event.cost_rcc} RCC reserved"
        case JobQueued():
            return "queued", "queued for a ComfyUI backend"
        case JobPromptSubmitted():
            return "submitted", f"submitted to {event.backend} as prompt {event.prompt_id}"
        case JobStarted():
            return "running", "running on ComfyUI"
        case JobSucceeded():
            shown = f" in {event.duration_ms} ms" if event.duration_ms is not None else ""
            return "succeeded", f"succeeded{shown} with {len(event.output_uris)} output(s)"
        case JobFailed():
            return "failed", f"failed: {event.error}"
        case JobCancelled():
            return "cancelled", f"cancelled by {event.actor or 'the owner'}"
    return None


async def job_log(conn: asyncpg.Connection, job_id: str) -> JobLog:
    """A job's timeline from its own stream: lifecycle events and the execution log."""
    lines: list[LogLine] = []
    prompt_id = backend = None
    for record in await read_stream(conn, job_stream(job_id)):
        try:
            event = record.decode()
        except msgspec.ValidationError:
            continue
        if isinstance(event, JobExecutionLogged):
            lines.extend(
                LogLine(at=x.at, source=x.source, kind=x.kind, message=x.message, node=x.node)
                for x in event.lines
            )
            continue
        if isinstance(event, JobPromptSubmitted):
            prompt_id, backend = event.prompt_id, event.backend
        found = _lifecycle(event)
        if found is not None:
            lines.append(
                LogLine(at=record.recorded_at, source="rcc", kind=found[0], message=found[1])
            )
    lines.sort(key=lambda line: line.at)
    return JobLog(job_id=job_id, prompt_id=prompt_id, backend=backend, lines=lines)
