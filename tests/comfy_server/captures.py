"""The recorded ComfyUI 0.3.64 traffic (a copy of ../shared/comfyui-protocol in captures/).

The test server builds its answers from these records: bodies, error shapes and the
field layout of every websocket message come from here, not from retyped literals.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

CAPTURES = Path(__file__).resolve().parent / "captures"


@cache
def _load(relative: str) -> Any:
    return json.loads((CAPTURES / relative).read_text())


def record(relative: str) -> dict[str, Any]:
    """One HTTP record: {request, status, headers, body | body_length ...} (a deep copy)."""
    found: dict[str, Any] = copy.deepcopy(_load(relative))
    return found


def body(relative: str) -> Any:
    return record(relative)["body"]


@cache
def _ws_log(relative: str) -> tuple[dict[str, Any], ...]:
    lines = (CAPTURES / relative).read_text().splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def ws_log(relative: str) -> list[dict[str, Any]]:
    """Every frame of a websocket log: {seq, t_ms, kind, msg | binary header fields}."""
    return copy.deepcopy(list(_ws_log(relative)))


def ws_messages(relative: str) -> list[dict[str, Any]]:
    """The text messages of a websocket log, exactly as the server sent them."""
    return [frame["msg"] for frame in ws_log(relative) if frame["kind"] == "text"]


def ws_logs() -> list[Path]:
    return sorted(CAPTURES.glob("*/ws_*.jsonl"))


@cache
def _templates() -> dict[str, dict[str, Any]]:
    """The first recorded `data` of each message type (and of the connect-time status)."""
    found: dict[str, dict[str, Any]] = {}
    for path in ws_logs():
        for message in ws_messages(str(path.relative_to(CAPTURES))):
            key = message["type"]
            if key == "status" and "sid" in message["data"]:
                key = "status_connect"
            if key == "executing" and message["data"].get("node") is None:
                key = "executing_end"
            found.setdefault(key, message["data"])
    return found


def template(kind: str) -> dict[str, Any]:
    """A recorded message body to fill in: same keys, same order as the real server."""
    return copy.deepcopy(_templates()[kind])


@cache
def node_names() -> frozenset[str]:
    return frozenset((CAPTURES / "object_info" / "node_names.txt").read_text().split())


@cache
def output_nodes() -> frozenset[str]:
    """Classes whose object_info says output_node: true (SaveImage, PreviewImage,
    SaveVideo, SaveWEBM, ...), from the whole recorded GET /object_info."""
    return frozenset(name for name, info in _full_object_info().items() if info.get("output_node"))


def validation_records() -> list[dict[str, Any]]:
    """Every recorded 400 answer to POST /prompt, with its request."""
    return [
        record(str(p.relative_to(CAPTURES)))
        for p in sorted(CAPTURES.glob("validation_errors/*.json"))
    ]


def run_prompt(run: str) -> dict[str, Any]:
    """The workflow a recorded run posted (to replay it against the test server)."""
    prompt: dict[str, Any] = record(f"{run}/post_prompt.json")["request"]["json_body"]["prompt"]
    return prompt


@cache
def _full_object_info() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (CAPTURES / "object_info" / "_full_object_info.json").read_text()
    )
    return found


def full_object_info() -> dict[str, Any]:
    """The whole recorded GET /object_info body (478 node types; a deep copy)."""
    return copy.deepcopy(_full_object_info())
