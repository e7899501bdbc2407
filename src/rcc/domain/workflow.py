"""What a ComfyUI API-format prompt must look like before we charge for it.

The shape is `{node_id: {"class_type": str, "inputs": {...}, "_meta"?: {...}}}`, as
ComfyUI's POST /prompt expects. Limits keep hostile bodies cheap to refuse."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from rcc.domain.errors import PayloadTooLarge

MAX_NODES = 500
MAX_DEPTH = 12
# RCC_MAX_WORKFLOW_BYTES: the largest workflow a job may store (its canonical JSON).
DEFAULT_MAX_WORKFLOW_BYTES = 256 * 1024


class WorkflowBlob(msgspec.Struct, frozen=True):
    """A workflow as stored once: its canonical JSON and that JSON's sha256."""

    digest: bytes
    body: bytes

    @property
    def hex(self) -> str:
        return self.digest.hex()


def workflow_blob(workflow: dict[str, Any]) -> WorkflowBlob:
    """The canonical form (sorted keys, no spaces), so equal workflows share one digest."""
    body = msgspec.json.encode(workflow, order="sorted")
    return WorkflowBlob(hashlib.sha256(body).digest(), body)


def too_large(blob: WorkflowBlob, limit: int) -> PayloadTooLarge | None:
    """Refuse a workflow whose canonical JSON is over `limit` bytes."""
    if len(blob.body) <= limit:
        return None
    return PayloadTooLarge(
        detail=f"the workflow is {len(blob.body)} bytes as JSON; at most {limit} bytes"
        " (RCC_MAX_WORKFLOW_BYTES) are stored per job",
        limit_bytes=limit,
        size_bytes=len(blob.body),
    )


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past `limit`."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def workflow_problem(workflow: dict[str, Any]) -> str | None:
    """Why this prompt cannot run, or None when its shape is right."""
    if not workflow:
        return "workflow is empty: send a ComfyUI API-format prompt"
    if len(workflow) > MAX_NODES:
        return f"workflow has {len(workflow)} nodes; at most {MAX_NODES} are accepted"
    if _depth(workflow, MAX_DEPTH) > MAX_DEPTH:
        return f"workflow is nested deeper than {MAX_DEPTH} levels"
    for node_id, node in workflow.items():
        if not isinstance(node, dict):
            return f"workflow node {node_id!r} must be an object"
        if not isinstance(node.get("class_type"), str) or not node["class_type"]:
            return f"workflow node {node_id!r} needs a class_type"
        if not isinstance(node.get("inputs", {}), dict):
            return f"workflow node {node_id!r}: inputs must be an object"
    return None
