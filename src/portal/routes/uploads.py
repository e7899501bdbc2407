"""Uploads: POST /uploads (multipart field `file`) and GET /uploads/{id} (owner only).

A file is checked by its content (portal/upload_content.py), bounded in bytes
(RCC_MAX_UPLOAD_BYTES, 413) and pixels (RCC_MAX_UPLOAD_PIXELS, 422, before decoding),
stored under its id only (the client's filename is never a path), rate limited per user
(RCC_RATE_UPLOADS_PER_MIN, 429) and kept RCC_UPLOAD_TTL_S, then deleted. A refused
file leaves nothing behind: no bytes on disk, no event.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State, UploadFile
from litestar.params import FromPath

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import identity_of, signed_in_user
from portal.ratelimit import Limit, hit
from portal.responses import SIGNED_IN, errors
from portal.upload_content import Refused, examine
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.projector.wait import wait_for
from rcc.service.bus import execute
from rcc.service.template_commands import RecordUpload
from rcc.service.upload_sweeper import UploadSweeper
from rcc.service.upload_sweeper import uploads_dir as upload_files_dir

# Multipart framing around the file: the body limit is the file limit plus this.
FORM_OVERHEAD_BYTES = 64 * 1024
_UNSAFE_NAME = ("/", "\\", "\x00", "..")


class UploadView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    expires_at: datetime


def uploads_dir(settings: Settings) -> Path:
    return upload_files_dir(settings.data_dir)


async def _user(request: Request[Any, Any, Any]) -> str:
    who = await identity_of(request)
    assert who is not None and who.user_id is not None  # the guard made sure
    return who.user_id


async def _rate_limited(pool: asyncpg.Pool, user_id: str, per_min: int) -> None:
    async with pool.acquire() as conn:
        wait = await hit(conn, f"uploads:{user_id}", Limit(per_min, 60))
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"at most {per_min} uploads a minute",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )


async def _file(request: Request[Any, Any, Any], limit: int) -> tuple[bytes, str]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "invalid_request", "send the file as the multipart field `file`")
    name = upload.filename or ""
    if any(part in name for part in _UNSAFE_NAME):
        raise ApiError(400, "invalid_filename", "a filename must not contain a path")
    body = await upload.read(limit + 1)
    if len(body) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"at most {limit} bytes (RCC_MAX_UPLOAD_BYTES)",
            limit_bytes=limit,
        )
    if not body:
        raise ApiError(400, "invalid_request", "the file is empty")
    return body, name


async def sweep_expired(pool: asyncpg.Pool, directory: Path) -> int:
    """Delete the files of uploads past their time (their rows stay, as history): one
    tick of the scheduler's sweeper, which also runs on its own clock (h15)."""
    return len(await UploadSweeper(pool, directory=directory).tick())


@post(
    "/uploads",
    status_code=201,
    responses=errors(400, *SIGNED_IN, 409, 413, 415, 422, 429),
    request_max_body_size=None,  # bounded below, by RCC_MAX_UPLOAD_BYTES
)
async def create_upload(
    state: State, request: Request[Any, Any, Any], idempotency_key: IdempotencyKey = None
) -> Response[UploadView]:
    """Upload an image (PNG, JPEG, WebP) or video (MP4, WebM) for a template's input."""
    settings: Settings = state.settings
    limits = settings.templates
    user_id = await _user(request)
    await _rate_limited(state.pool, user_id, limits.uploads_per_min)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise ApiError(413, "payload_too_large", f"at most {limits.max_upload_bytes} bytes")
    body, _ = await _file(request, limits.max_upload_bytes)
    try:
        content = examine(body, limits.max_upload_pixels)
    except Refused as refused:
        raise ApiError(refused.status, refused.code, refused.detail) from None
    directory = uploads_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    await sweep_expired(state.pool, directory)
    upload_id = str(uuid.uuid4())
    if idempotency_key:  # a retry names the same upload
        upload_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"upload:{user_id}:{idempotency_key}"))
    expires_at = datetime.now(UTC) + timedelta(seconds=limits.upload_ttl_s)
    path = directory / upload_id
    path.write_bytes(body)
    command = RecordUpload(
        upload_id=upload_id,
        user_id=user_id,
        kind=content.kind,
        content_type=content.content_type,
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        width=content.width,
        height=content.height,
        expires_at=expires_at,
    )
    key = f"uploads:{user_id}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, idempotency_key=key)
    if isinstance(done, DomainError):
        path.unlink(missing_ok=True)
        return domain_response(done)  # type: ignore[return-value]
    await wait_for(state.pool, done.checkpoint, ["uploads"], settings.read_wait_s)
    return Response(await _view(state.pool, user_id, upload_id), status_code=201)


async def _view(pool: asyncpg.Pool, user_id: str, upload_id: str) -> UploadView:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT id, kind, content_type, bytes, width, height, expires_at FROM uploads
                WHERE id = $1 AND user_id = $2 AND expires_at > $3""",
            upload_id,
            user_id,
            datetime.now(UTC),
        )
    if row is None:  # someone else's, expired or unknown: all look the same
        raise ApiError(404, "not_found", "no such upload")
    return msgspec.convert(dict(row), UploadView)


@get("/uploads/{upload_id:str}", responses=errors(400, *SIGNED_IN, 404))
async def get_upload(
    upload_id: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> UploadView:
    """One of your uploads (anyone else's is a 404)."""
    return await _view(state.pool, await _user(request), upload_id)


router = Router(
    path="/", route_handlers=[create_upload, get_upload], guards=[signed_in_user], tags=["uploads"]
)
