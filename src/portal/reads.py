"""Queries the portal runs against the read models (projections/), with keyset pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from portal.pagination import decode_cursor, encode_cursor
from portal.schemas import JobPage, JobView, LedgerEntry, LedgerPage

_JOB_COLUMNS = """id, user_id, type, cost_rcc, status, duration_ms, output_uris, error,
                  metadata, created_at, started_at, ended_at"""


def job_view(row: asyncpg.Record) -> JobView:
    return JobView(**dict(row))


async def job_by_id(conn: asyncpg.Connection, job_id: str) -> JobView | None:
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
    return job_view(row) if row else None


class _Where:
    """Builds a WHERE clause with numbered parameters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def add(self, sql: str, *values: Any) -> None:
        for value in values:
            self.args.append(value)
            sql = sql.replace("?", f"${len(self.args)}", 1)
        self.parts.append(sql)

    def clause(self) -> str:
        return f"WHERE {' AND '.join(self.parts)}" if self.parts else ""


async def job_page(
    conn: asyncpg.Connection,
    *,
    user_id: str | None,
    status: str | None,
    job_type: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> JobPage:
    """Jobs newest first; filters are optional; `user_id=None` means every user (admin)."""
    where = _Where()
    if user_id is not None:
        where.add("user_id = ?", user_id)
    if status:
        where.add("status = ?", status)
    if job_type:
        where.add("type = ?", job_type)
    if since:
        where.add("created_at >= ?", since)
    if until:
        where.add("created_at < ?", until)
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        where.add("(created_at, id) < (?, ?)", stamp, row_id)
    rows = await conn.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM jobs {where.clause()}
            ORDER BY created_at DESC, id DESC LIMIT {limit + 1}""",
        *where.args,
    )
    items = [job_view(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if more else None
    return JobPage(
        items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None
    )


async def ledger_page(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    reason: str | None,
    job_id: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> LedgerPage:
    """A user's ledger lines newest first, filtered by reason, job and date range."""
    where = _Where()
    where.add("user_id = ?", user_id)
    if reason:
        where.add("reason = ?", reason)
    if job_id:
        where.add("job_id = ?", job_id)
    if since:
        where.add("created_at >= ?", since)
    if until:
        where.add("created_at < ?", until)
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        where.add("(created_at, id) < (?, ?::bigint)", stamp, row_id)
    rows = await conn.fetch(
        f"""SELECT id, user_id, delta, reason, job_id, external_ref, created_at
              FROM rcc_ledger {where.clause()}
             ORDER BY created_at DESC, id DESC LIMIT {limit + 1}""",
        *where.args,
    )
    items = [LedgerEntry(**dict(r)) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return LedgerPage(
        items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None
    )
