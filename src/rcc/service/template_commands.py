"""Template commands (admin only): publish, publish a new version, unpublish; and the
record of a user's upload."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rcc.service.commands import Command


class PublishTemplate(Command, frozen=True, kw_only=True):
    template_id: str
    spec: dict[str, Any]  # a TemplateSpec as JSON, checked by the handler
    actor: str


class ReviseTemplate(Command, frozen=True, kw_only=True):
    template_id: str
    spec: dict[str, Any]
    actor: str


class UnpublishTemplate(Command, frozen=True, kw_only=True):
    template_id: str
    actor: str


class RecordUpload(Command, frozen=True, kw_only=True):
    """A checked file is on disk; record it (who owns it, what it is, until when)."""

    upload_id: str
    user_id: str
    kind: str
    content_type: str
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    expires_at: datetime
