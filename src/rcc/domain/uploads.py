"""Uploads: which files users may upload, and the name a file has on a backend.

A file is known on a backend (ComfyUI's input folder) as `rcc_upload_<id>.<ext>`: our
id, never the client's filename, so no path or name a client chose reaches a disk.
"""

from __future__ import annotations

import re
from typing import Any

CONTENT_TYPES: dict[str, tuple[str, str]] = {  # content type -> (kind, extension)
    "image/png": ("image", "png"),
    "image/jpeg": ("image", "jpg"),
    "image/webp": ("image", "webp"),
    "video/mp4": ("video", "mp4"),
    "video/webm": ("video", "webm"),
}
_BY_EXTENSION = {ext: ctype for ctype, (_, ext) in CONTENT_TYPES.items()}
_NAME = re.compile(
    r"^rcc_upload_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(\w+)$"
)


def backend_file_name(upload_id: str, content_type: str) -> str:
    """The name the backend knows this upload by."""
    return f"rcc_upload_{upload_id}.{CONTENT_TYPES[content_type][1]}"


def uploads_in(workflow: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(backend file name, upload id, content type) of every upload a workflow names,
    each once, in node order."""
    found: dict[str, tuple[str, str, str]] = {}
    for node in workflow.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        for value in inputs.values():
            match = _NAME.match(value) if isinstance(value, str) else None
            if match and match.group(2) in _BY_EXTENSION:
                found[value] = (value, match.group(1), _BY_EXTENSION[match.group(2)])
    return list(found.values())
