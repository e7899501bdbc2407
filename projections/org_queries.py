"""The reads of organisations (issue 13): keyset pages over the org read models, the
org's ledger (filterable by member) and its jobs."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from projections.paging import Where, page
from projections.queries import jobs_page, ledger_lines_page
from projections.views import JobView, LedgerEntry, Page


class MyOrg(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str
    joined_at: datetime


class AdminOrgView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    owner_user_id: str
    member_count: int
    monthly_budget_rcc: int | None
    balance_rcc: int
    created_at: datetime


async def my_orgs_page(
    conn: asyncpg.Connection, user_id: str, *, cursor: str | None, limit: int
) -> Page[MyOrg]:
    """The organisations a user belongs to now, newest membership first."""
    return await page(
        conn,
        select="""SELECT * FROM (SELECT o.id, o.name, m.role, m.joined_at
                                   FROM org_members m JOIN orgs o ON o.id = m.org_id
                                  WHERE m.user_id = $1 AND m.active) AS mine""",
        where=_mine(user_id),
        time_column="joined_at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), MyOrg),
        id_type=str,
    )


def _escaped(text: str) -> str:
    """`text` matched literally by LIKE (its wildcards escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _mine(user_id: str) -> Where:
    where = Where()
    where.params.append(user_id)  # $1 in the subquery above
    return where


async def org_ledger_page(
    conn: asyncpg.Connection,
    wallet_id: str,
    *,
    member: str | None,
    reason: str | None,
    cursor: str | None,
    limit: int,
) -> Page[LedgerEntry]:
    """The org wallet's ledger, newest first; `member` keeps the lines of that member's
    jobs (a line's job names who spent)."""
    where = (
        Where()
        .add("wallet_id = {0}", wallet_id)
        .when(reason, "reason = {0}")
        .when(member, "job_id IN (SELECT id FROM jobs WHERE user_id = {0})")
    )
    return await ledger_lines_page(conn, where, cursor=cursor, limit=limit)


async def org_jobs_page(
    conn: asyncpg.Connection,
    wallet_id: str,
    *,
    user_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[JobView]:
    """Jobs charged to the org's wallet (one member's, or everyone's), newest first."""
    return await jobs_page(
        conn, wallet_id=wallet_id, user_id=user_id, status=status, cursor=cursor, limit=limit
    )


async def admin_orgs_page(
    conn: asyncpg.Connection, *, name: str | None, cursor: str | None, limit: int
) -> Page[AdminOrgView]:
    """Every organisation with its balance, newest first; `name` matches its start."""
    prefix = None if name is None else _escaped(name.strip()) + "%"
    where = Where().when(prefix, "name ILIKE {0}")
    return await page(
        conn,
        select="""SELECT * FROM (SELECT o.id, o.name, o.owner_user_id, o.member_count,
                                        o.monthly_budget_rcc, o.created_at,
                                        coalesce(b.balance, 0) AS balance_rcc
                                   FROM orgs o
                                   LEFT JOIN wallet_balances b ON b.wallet_id = o.wallet_id)
                         AS listed""",
        where=where,
        time_column="created_at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), AdminOrgView),
        id_type=str,
    )
