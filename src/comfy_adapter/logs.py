"""Execution logs: what ComfyUI reported about a job's run, and what the adapter did.

The adapter gathers lines while it follows a run and records them on the job's stream
(JobExecutionLogged); `job_log` reads a job's stream back as one timeline for the
owner and admins (GET /jobs/{id}/logs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from comfy_adapter import protocol as p
from rcc.domain.events import (
    ExecutionLogLine,
)

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
