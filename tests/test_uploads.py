"""Uploads: checked by content, bounded, owned, kept for a while; hostile files refused
with a clear 4xx and nothing stored (no file on disk, no event)."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import asyncpg

from rcc.config import Settings
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.template_helpers import client_for, png, settings_with_backends, upload


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header says width x height (10 GB once decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


def zip_bomb() -> bytes:
    """A zip whose one member inflates 1,000-fold."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.png", b"\x00" * 10_000_000)
    return out.getvalue()


async def _stored(pool: asyncpg.Pool, data_dir: Path) -> tuple[int, list[str]]:
    async with pool.acquire() as conn:
        events = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'upload_stored'")
    directory = data_dir / "uploads"
    files = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
    return int(events), files


async def test_hostile_uploads_get_a_clear_4xx_and_nothing_is_stored(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    user = await bearer(pool, "user", await funded_user(pool, 0))
    small = settings_with_backends(settings, [], RCC_MAX_UPLOAD_BYTES="200000")
    hostile = [
        (
            "page.png",
            b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
            415,
            "unsupported_content",
        ),
        ("huge.png", png_claiming(50_000, 50_000), 422, "too_many_pixels"),
        ("bomb.zip", zip_bomb(), 415, "unsupported_content"),
        ("bomb.png", zip_bomb(), 415, "unsupported_content"),  # the name changes nothing
        ("../../etc/passwd.png", png(), 400, "invalid_filename"),
        ("big.png", png() + bytes(300_000), 413, "payload_too_large"),
        ("text.png", b"just some text", 415, "unsupported_content"),
    ]
    async with client_for(small, pool) as http:
        for name, body, status, code in hostile:
            answer = await upload(http, user, body, name)
            assert answer.status_code == status, (name, answer.text)
            assert answer.json()["error"] == code and answer.json()["detail"], name
    assert await _stored(pool, settings.data_dir) == (0, [])


async def test_an_upload_is_checked_by_content_owned_and_kept_for_a_while(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    owner = await bearer(pool, "user", await funded_user(pool, 0))
    other = await bearer(pool, "user", await funded_user(pool, 0))
    short = settings_with_backends(settings, [], RCC_UPLOAD_TTL_S="1")
    async with client_for(short, pool) as http:
        made = await upload(http, owner, png(640, 480), "holiday.jpg", "image/jpeg")
        assert made.status_code == 201, made.text
        body = made.json()
        assert (body["kind"], body["content_type"]) == ("image", "image/png")  # by content
        assert (body["width"], body["height"], body["bytes"]) == (640, 480, len(png(640, 480)))
        assert (await http.get(f"/uploads/{body['id']}", headers=owner)).status_code == 200
        assert (await http.get(f"/uploads/{body['id']}", headers=other)).status_code == 404
        files = sorted(p.name for p in (settings.data_dir / "uploads").iterdir())
        assert files == [body["id"]]  # named by id, never by the client's filename
        await asyncio.sleep(1.2)
        assert (await http.get(f"/uploads/{body['id']}", headers=owner)).status_code == 404
        await upload(http, owner, png(), "next.png")  # an upload sweeps expired files
    assert body["id"] not in [p.name for p in (settings.data_dir / "uploads").iterdir()]


async def test_a_thousand_uploads_in_a_minute_are_rate_limited(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    user = await bearer(pool, "user", await funded_user(pool, 0))
    answers: list[int] = []
    retry_after = None
    tiny = png(2, 2)
    async with client_for(settings, pool) as http:

        async def one() -> None:
            nonlocal retry_after
            answer = await upload(http, user, tiny)
            answers.append(answer.status_code)
            if answer.status_code == 429:
                retry_after = answer.headers["retry-after"]

        for _ in range(50):  # 1,000 in all, 20 at a time
            await asyncio.gather(*(one() for _ in range(20)))
    allowed = settings.templates.uploads_per_min
    # A window may turn over during the run: at most two windows' worth get through.
    assert allowed <= answers.count(201) <= 2 * allowed
    assert answers.count(429) == 1000 - answers.count(201)
    assert retry_after is not None and int(retry_after) >= 1
    events, files = await _stored(pool, settings.data_dir)
    assert events == len(files) == answers.count(201)
