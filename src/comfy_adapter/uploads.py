"""Send a job's uploads to its backend through ComfyUI's own POST /upload/image, right
before the prompt that names them (LoadImage validates its file at POST /prompt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfy_adapter.client import ComfyClient
from rcc.domain.uploads import uploads_in


class UploadGone(Exception):
    """A file the workflow names is no longer kept (it expired)."""


async def send_uploads(client: ComfyClient, uploads_dir: Path, workflow: dict[str, Any]) -> int:
    """Upload every file the workflow names; the number sent. Sending again is harmless
    (overwrite=true, same name, same bytes), so a retried submission sends again."""
    sent = 0
    for name, upload_id, content_type in uploads_in(workflow):
        path = uploads_dir / upload_id
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise UploadGone(f"upload {upload_id} is no longer kept") from None
        await client.upload_image(name, body, content_type)
        sent += 1
    return sent
