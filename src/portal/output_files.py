"""How output files are served: their own content type, never sniffed, never able to
run anything in our origin (a restrictive CSP, as an image or video needs none), and a
job's outputs as one zip."""

from __future__ import annotations

import io
import mimetypes
import zipfile
from pathlib import Path

# An output is shown inline (an <img> or <video> on the job page) or opened on its own;
# either way it needs no script, style, frame or connection of its own.
OUTPUT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; "
    "style-src 'unsafe-inline'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def media_type(name: str) -> str:
    """The content type an output is served with: from its extension, else a download."""
    suffix = Path(name).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.types_map.get(suffix) or "application/octet-stream"


def zip_of(files: list[tuple[str, Path]]) -> bytes:
    """The files in one zip (stored, not deflated: images and videos are compressed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, path in files:
            archive.write(path, arcname=name)
    return out.getvalue()
