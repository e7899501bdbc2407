"""ComfyUI's wire format, as recorded from a real 0.3.64 server (../shared/comfyui-protocol).

Websocket text frames are `{"type": <event>, "data": {...}}`; each `data` is decoded into
its own Struct. Stored history, queue and error bodies are decoded leniently (unknown
fields ignored), so a newer ComfyUI adding fields does not break the adapter.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

# --- websocket messages -------------------------------------------------------------


class Envelope(msgspec.Struct, frozen=True):
    type: str
    data: msgspec.Raw = msgspec.Raw(b"{}")


class ExecInfo(msgspec.Struct, frozen=True):
    queue_remaining: int = 0


class StatusBody(msgspec.Struct, frozen=True):
    exec_info: ExecInfo = ExecInfo()


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Broadcast when the queue changes; the connect-time one carries our `sid`."""

    status: StatusBody = StatusBody()
    sid: str | None = None


class ExecutionStart(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    timestamp: int | None = None


class ExecutionCached(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    nodes: list[str] = []
    timestamp: int | None = None


class Executing(msgspec.Struct, frozen=True, kw_only=True):
    """A node starts; `node` None is the end of the prompt (history is written by then)."""

    prompt_id: str | None = None
    node: str | None = None
    display_node: str | None = None


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    value: float
    max: float
    prompt_id: str | None = None
    node: str | None = None


class NodeProgress(msgspec.Struct, frozen=True, kw_only=True):
    value: float = 0
    max: float = 1
    state: str = ""
    node_id: str | None = None


class ProgressState(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str | None = None
    nodes: dict[str, NodeProgress] = {}


class FileRef(msgspec.Struct, frozen=True, kw_only=True):
    """A file a node wrote: fetch it with GET /view?filename=&subfolder=&type=."""

    filename: str
    subfolder: str = ""
    type: str = "output"


class Executed(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    node: str
    display_node: str | None = None
    output: dict[str, Any] = {}


class ExecutionSuccess(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    timestamp: int | None = None


class ExecutionError(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = []
    exception_message: str = ""
    exception_type: str = ""
    traceback: list[str] = []
    timestamp: int | None = None


class ExecutionInterrupted(msgspec.Struct, frozen=True, kw_only=True):
    prompt_id: str
    node_id: str | None = None
    node_type: str | None = None
    executed: list[str] = []
    timestamp: int | None = None


class FeatureFlags(msgspec.Struct, frozen=True, kw_only=True):
    supports_preview_metadata: bool = False
    max_upload_size: int | None = None


class Unknown(msgspec.Struct, frozen=True, kw_only=True):
    """A message type this adapter does not act on (kept for the log)."""

    type: str
    data: Any = None


Message = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | FeatureFlags
    | Unknown
)

_TYPES: dict[str, type[Any]] = {
    "status": Status,
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionError,
    "execution_interrupted": ExecutionInterrupted,
    "feature_flags": FeatureFlags,
}
_DECODERS = {name: msgspec.json.Decoder(cls) for name, cls in _TYPES.items()}
_ENVELOPE = msgspec.json.Decoder(Envelope)
TERMINAL_MESSAGES = (ExecutionSuccess, ExecutionError, ExecutionInterrupted)


def parse_message(text: str | bytes) -> Message:
    """One websocket text frame as its typed message (Unknown for other types)."""
    envelope = _ENVELOPE.decode(text)
    decoder = _DECODERS.get(envelope.type)
    if decoder is None:
        return Unknown(type=envelope.type, data=msgspec.json.decode(envelope.data))
    message: Message = decoder.decode(envelope.data)
    return message


def message_prompt_id(message: Message) -> str | None:
    """The prompt a message is about, if it names one."""
    return getattr(message, "prompt_id", None)


# --- binary frames -------------------------------------------------------------------

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


class BinaryFrame(msgspec.Struct, frozen=True, kw_only=True):
    """A preview image frame: 4-byte big-endian event type, then the payload."""

    event_type: int
    image_type: str | None = None
    metadata: dict[str, Any] = {}
    image_length: int = 0

    @property
    def prompt_id(self) -> str | None:
        found = self.metadata.get("prompt_id")
        return found if isinstance(found, str) else None


def parse_binary(frame: bytes) -> BinaryFrame:
    """Decode a binary frame's header (type 1: image type; type 4: JSON metadata)."""
    if len(frame) < 4:
        raise ValueError("binary frame shorter than its 4-byte type")
    (event_type,) = struct.unpack(">I", frame[:4])
    if event_type == PREVIEW_IMAGE and len(frame) >= 8:
        (image_type,) = struct.unpack(">I", frame[4:8])
        return BinaryFrame(
            event_type=event_type,
            image_type=_IMAGE_TYPES.get(image_type, f"unknown/{image_type}"),
            image_length=len(frame) - 8,
        )
    if event_type == PREVIEW_IMAGE_WITH_METADATA and len(frame) >= 8:
        (length,) = struct.unpack(">I", frame[4:8])
        metadata = msgspec.json.decode(frame[8 : 8 + length])
        return BinaryFrame(
            event_type=event_type,
            image_type=metadata.get("image_type"),
            metadata=metadata,
            image_length=len(frame) - 8 - length,
        )
    return BinaryFrame(event_type=event_type, image_length=len(frame) - 4)


# --- HTTP bodies ---------------------------------------------------------------------


class PromptAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """POST /prompt 200: queued. Non-empty node_errors: only the valid outputs will run."""

    prompt_id: str
    number: int
    node_errors: dict[str, Any] = {}


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""
    message: str = ""
    details: str = ""
    extra_info: dict[str, Any] = {}


class NodeError(msgspec.Struct, frozen=True, kw_only=True):
    errors: list[ErrorDetail] = []
    dependent_outputs: list[str] = []
    class_type: str = ""


class PromptRefused(msgspec.Struct, frozen=True, kw_only=True):
    """POST /prompt 400: validation refused the prompt; nothing was queued."""

    error: ErrorDetail | str = ErrorDetail()
    node_errors: dict[str, NodeError] = {}


class HistoryStatus(msgspec.Struct, frozen=True, kw_only=True):
    status_str: str = ""
    completed: bool = False
    messages: list[tuple[str, dict[str, Any]]] = []


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """GET /history/{id}: the prompt, its outputs and how it ended."""

    prompt: list[Any] = []
    outputs: dict[str, dict[str, Any]] = {}
    status: HistoryStatus = HistoryStatus()
    meta: dict[str, Any] = {}

    def message(self, kind: str) -> dict[str, Any] | None:
        """The data of the first status message of this kind (execution_error, ...)."""
        return next((data for name, data in self.status.messages if name == kind), None)


class QueueState(msgspec.Struct, frozen=True, kw_only=True):
    """GET /queue: items are [number, prompt_id, prompt, extra_data, outputs_to_execute]."""

    queue_running: list[list[Any]] = []
    queue_pending: list[list[Any]] = []

    def where(self, prompt_id: str) -> str | None:
        """ "running", "pending" or None when the prompt is in neither list."""
        if any(len(item) > 1 and item[1] == prompt_id for item in self.queue_running):
            return "running"
        if any(len(item) > 1 and item[1] == prompt_id for item in self.queue_pending):
            return "pending"
        return None


_HISTORY = msgspec.json.Decoder(dict[str, HistoryEntry])


def parse_history(body: bytes, prompt_id: str) -> HistoryEntry | None:
    """The entry for `prompt_id` in a GET /history/{id} body ({} when unknown or deleted)."""
    return _HISTORY.decode(body).get(prompt_id)


def parse_accepted(body: bytes) -> PromptAccepted:
    return msgspec.json.decode(body, type=PromptAccepted)


def parse_refusal(body: bytes) -> PromptRefused:
    return msgspec.json.decode(body, type=PromptRefused)


def parse_queue(body: bytes) -> QueueState:
    return msgspec.json.decode(body, type=QueueState)


def output_files(outputs: dict[str, dict[str, Any]]) -> list[tuple[str, FileRef]]:
    """Every file the outputs name, as (node id, file), in node order.

    Output nodes list files under "images", "gifs", "video", "audio", ...: any list of
    objects with a filename is a file list, whatever the key.
    """
    found: list[tuple[str, FileRef]] = []
    for node_id in sorted(outputs, key=_node_order):
        for value in outputs[node_id].values():
            if not isinstance(value, list):
                continue
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    found.append((node_id, msgspec.convert(item, FileRef, strict=False)))
    return found


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


# --- human messages for failed jobs ---------------------------------------------------


def refusal_text(refused: PromptRefused) -> str:
    """ComfyUI's own words for a refused prompt, with each node's errors."""
    error = refused.error
    if isinstance(error, str):
        head = error
    else:
        head = error.message or error.type or "prompt refused"
        if error.details and error.details not in head:
            head = f"{head}: {error.details}"
    nodes = node_errors_text(refused.node_errors)
    return f"{head}; {nodes}" if nodes else head


def node_errors_text(node_errors: dict[str, NodeError] | dict[str, Any]) -> str:
    """Each node's validation errors: `node 1 (EmptyImage): Value 0 smaller than ...`."""
    typed = msgspec.convert(node_errors, dict[str, NodeError])
    parts = []
    for node_id in sorted(typed, key=_node_order):
        node = typed[node_id]
        for item in node.errors:
            text = f"{item.message}: {item.details}" if item.details else item.message
            parts.append(f"node {node_id} ({node.class_type}): {text}")
    return "; ".join(parts)


def execution_error_text(error: dict[str, Any]) -> str:
    """An execution_error as one line: where it failed and ComfyUI's exception."""
    where = _where(error)
    kind = str(error.get("exception_type") or "error")
    text = str(error.get("exception_message") or "").strip()
    return f"ComfyUI failed{where}: {kind}: {text}" if text else f"ComfyUI failed{where}: {kind}"


def interrupted_text(data: dict[str, Any]) -> str:
    return f"ComfyUI interrupted the run{_where(data)}"


def _where(data: dict[str, Any]) -> str:
    node, node_type = data.get("node_id"), data.get("node_type")
    if node and node_type:
        return f" at node {node} ({node_type})"
    return f" at node {node}" if node else ""
