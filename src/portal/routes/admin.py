"""Admin endpoints: dashboard, users, jobs, payments, operations log and the raw event log.

Every route here sits behind one guard on the router, so a new admin route cannot
forget it: admins may do anything here, service tokens may only read."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, patch
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_or_service_reader, client_ip, identity_of
from portal.job_views import page_with_waiting_reasons
from portal.responses import BODY, SIGNED_IN, errors
from portal.routes.policies import block_account
from portal.schemas import AdminUserPatch, JobStatus, JobType
from projections import queries
from projections.views import Dashboard, JobView, LogEntry, Page, PaymentView, UserView
from rcc.domain.errors import DomainError
from rcc.projector.wait import wait_for
from rcc.service.bus import execute
from rcc.service.commands import PatchUser

CSV_MAX_ROWS = 100_000
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
READ = errors(400, *SIGNED_IN)


class RawEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    hash: str


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RawEvent]
    next_after: int | None


@get("/dashboard", responses=READ)
async def dashboard(
    state: State, days: Annotated[int, QueryParameter(ge=1, le=366)] = 30
) -> Dashboard:
    """The PRD §15 KPIs, read from hourly counters (cost grows with days, not events)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await queries.dashboard(conn, days=days)


@get("/users", responses=READ)
async def users(
    state: State,
    email: FromQuery[str | None] = None,
    is_admin: FromQuery[bool | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[UserView]:
    """Users newest first; `email` matches the start of the address."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await queries.users_page(
            conn, email=email, is_admin=is_admin, cursor=cursor, limit=limit
        )


@patch("/users/{user_id:str}", responses=errors(*BODY, *SIGNED_IN, 402, 404, 409, 422))
async def patch_user(
    user_id: FromPath[str],
    data: JSONBody[AdminUserPatch],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[UserView]:
    """Adjust a user's RCC (MANUAL_ADJUST, a reason required) and/or toggle admin.

    Both in one transaction: if either is refused nothing changes. Repeating an
    Idempotency-Key applies the change once and answers the user as it is now."""
    if data.blocked is not None:  # h6: blocking is its own audited command
        if data.rcc_delta is not None or data.is_admin is not None:
            raise ApiError(422, "invalid", "send blocked (with a reason) in a patch of its own")
        return await block_account(  # type: ignore[return-value]
            request, state, user_id, data.blocked, data.reason, idempotency_key
        )
    who = await identity_of(request)
    assert who is not None
    if data.rcc_delta is None and data.is_admin is None:
        raise ApiError(422, "nothing_to_change", "send rcc_delta (with a reason) or is_admin")
    if data.rcc_delta is not None and not (data.reason or "").strip():
        raise ApiError(422, "reason_required", "a reason is required for any rcc_delta")
    if data.expires_at is not None and data.expires_at.tzinfo is None:
        raise ApiError(422, "invalid", "expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    actor = who.email or f"token:{who.role}"
    metadata = {"actor": actor, "client_ip": client_ip(request), "via": who.via}
    command = PatchUser(
        user_id=user_id,
        actor=actor,
        rcc_delta=data.rcc_delta,
        note=data.reason or "",
        is_admin=data.is_admin,
        expires_at=data.expires_at,
    )
    # Scoped to the admin who sent it, like a user's key is scoped to the user.
    key = f"admin-users:{actor}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    await wait_for(state.pool, done.checkpoint, ["users"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        view = await queries.user(conn, user_id)
    if view is None:
        raise ApiError(404, "not_found", "no such user")
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return Response(view, status_code=200, headers=headers)


@get("/jobs", responses=READ)
async def jobs(
    state: State,
    user_id: FromQuery[str | None] = None,
    status: FromQuery[JobStatus | None] = None,
    type: FromQuery[JobType | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[JobView]:
    """Everyone's jobs newest first; filter by user, status, type and [since, until)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await queries.jobs_page(
            conn,
            user_id=user_id,
            status=status,
            type=type,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
    return await page_with_waiting_reasons(pool, found)


@get("/payments", responses=READ)
async def payments(
    state: State,
    user_id: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    type: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[PaymentView]:
    """Every payment with its status, newest first."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await queries.payments_page(
            conn, user_id=user_id, status=status, type=type, cursor=cursor, limit=limit
        )


@get("/logs", responses=READ)
async def logs(
    state: State,
    user_id: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[LogEntry]:
    """The operations log (admin, sign-in and ComfyUI operations), newest first."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await queries.logs_page(
            conn,
            user_id=user_id,
            action=action,
            status=status,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )


_CSV_COLUMNS = ["id", "at", "user_id", "actor", "ip", "action", "status", "detail"]


@get("/logs.csv", media_type="text/csv", responses=READ)
async def logs_csv(
    state: State,
    action: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
) -> Stream:
    """The operations log as CSV (same filters), streamed page by page."""
    pool: asyncpg.Pool = state.pool

    async def fetch(cursor: str | None) -> Page[LogEntry]:
        async with pool.acquire() as conn:
            return await queries.logs_page(
                conn,
                action=action,
                status=status,
                since=since,
                until=until,
                cursor=cursor,
                limit=500,
            )

    # The first page before the headers go out: input the database refuses is still a
    # clean 400 then, not a stream cut short after a 200.
    first = await fetch(None)

    async def rows() -> AsyncIterator[str]:
        yield _csv_line(_CSV_COLUMNS)
        page, sent = first, 0
        while True:
            for entry in page.items:
                yield _csv_line([_cell(getattr(entry, c)) for c in _CSV_COLUMNS])
            sent += len(page.items)
            if page.next_cursor is None or sent >= CSV_MAX_ROWS:
                return
            page = await fetch(page.next_cursor)

    return Stream(
        rows(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="rcc-operations-log.csv"'},
    )


# A spreadsheet runs a cell starting with one of these as a formula; anyone can put one
# in the log (the email of a failed sign-in), so such cells get OWASP's leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


@get("/events", responses=READ)
async def events(
    state: State,
    stream: FromQuery[str | None] = None,
    after: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
    limit: Limit = 100,
) -> EventPage:
    """The raw event log for auditors, by position, optionally one stream."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT position, stream_id, version, type, data, metadata, recorded_at, hash
                 FROM events
                WHERE position > $1 AND ($2::text IS NULL OR stream_id = $2)
                ORDER BY position LIMIT $3""",
            after,
            stream,
            limit,
        )
    items = [RawEvent(**{**dict(r), "hash": bytes(r["hash"]).hex()}) for r in rows]
    return EventPage(items=items, next_after=items[-1].position if len(items) == limit else None)


router = Router(
    path="/admin",
    route_handlers=[dashboard, users, patch_user, jobs, payments, logs, logs_csv, events],
    guards=[admin_or_service_reader],
    tags=["admin"],
)
