"""Keyset cursors: an opaque token for (created_at, id) of the last row on a page."""

from __future__ import annotations

import base64
from datetime import datetime

from portal.errors import ApiError


def encode_cursor(created_at: datetime, row_id: str | int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_cursor", "cursor is not one this API handed out") from None
