"""The policy book read from the event log, cached per process.

The hot path (every job creation) asks for the book once per transaction; the cache
answers it after one primary-key lookup of the `policies` stream head: while its
version and last hash are the ones the cached book was built from, the book is
current (the hash also tells two databases apart, as tests use several). A change
costs one reload of the stream, which holds only policy events."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from rcc.domain.events import POLICIES_STREAM, PolicySet
from rcc.policy.book import PolicyBook, entry_of
from rcc.policy.keys import FREE_PLAN


class _Cached(msgspec.Struct):
    version: int
    last_hash: bytes
    book: PolicyBook


_cache: list[_Cached] = []  # at most one: the newest book this process has seen


async def current_book(conn: asyncpg.Connection) -> PolicyBook:
    """The book as the database holds it now (in this transaction's view)."""
    return (await book_and_plans(conn, []))[0]


async def book_and_plans(
    conn: asyncpg.Connection, user_ids: Sequence[str]
) -> tuple[PolicyBook, dict[str, str]]:
    """The current book and each user's plan, in one round trip (the job path's cost)."""
    row = await conn.fetchrow(
        """SELECT s.version, s.last_hash,
                  (SELECT coalesce(jsonb_object_agg(u.id, u.plan), '{}'::jsonb) FROM users u
                    WHERE u.id = ANY($2::text[]) AND u.plan IS NOT NULL
                      AND u.plan_active_until > now()) AS plans
             FROM (SELECT 1) AS one
             LEFT JOIN streams s ON s.stream_id = $1""",
        POLICIES_STREAM,
        list(user_ids),
    )
    plans = {u: row["plans"].get(u, FREE_PLAN) for u in user_ids}
    if row["version"] is None:
        return PolicyBook(), plans
    stamp = (row["version"], bytes(row["last_hash"]))
    if _cache and (_cache[0].version, _cache[0].last_hash) == stamp:
        return _cache[0].book, plans
    book = await load_book(conn)
    _cache[:] = [_Cached(stamp[0], stamp[1], book)]
    return book, plans


async def load_book(conn: asyncpg.Connection, up_to_version: int | None = None) -> PolicyBook:
    """Every PolicySet of the stream (up to a version), straight from the events."""
    rows = await conn.fetch(
        """SELECT version, data, recorded_at FROM events
            WHERE stream_id = $1 AND type = 'policy_set' AND version <= $2
            ORDER BY version""",
        POLICIES_STREAM,
        up_to_version if up_to_version is not None else 2**62,
    )
    return PolicyBook(
        entry_of(msgspec.convert(r["data"], PolicySet), r["version"], r["recorded_at"])
        for r in rows
    )


async def plans_of(conn: asyncpg.Connection, user_ids: Sequence[str]) -> dict[str, str]:
    """Each user's plan: its active subscription's (the users read model), else free.

    Plans change by Stripe webhooks, rarely; the read model's short lag is accepted."""
    rows = await conn.fetch(
        """SELECT id, plan FROM users
            WHERE id = ANY($1::text[]) AND plan IS NOT NULL AND plan_active_until > now()""",
        list(user_ids),
    )
    found = {r["id"]: r["plan"] for r in rows}
    return {u: found.get(u, FREE_PLAN) for u in user_ids}
