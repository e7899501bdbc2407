"""Policies: operational values set by admins per scope, as events (docs/POLICIES.md).

`resolve(book, key, user=, org=, plan=, at=)` is the one lookup; `current_book(conn)`
gives the book (cached, checked against the stream head on every call);
`lookup(conn, key, ...)` does both."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from rcc.domain.events import PolicyValue
from rcc.policy.book import PolicyBook, resolve
from rcc.policy.keys import KEYS, PolicyKey
from rcc.policy.store import current_book

__all__ = ["KEYS", "PolicyBook", "PolicyKey", "current_book", "lookup", "resolve"]


async def lookup(
    conn: asyncpg.Connection,
    key: str,
    *,
    user: str | None = None,
    org: str | None = None,
    plan: str | None = None,
    at: datetime | None = None,
    default: PolicyValue = None,
    has_default: bool = False,
) -> PolicyValue:
    """`resolve` against the current book, for callers off the hot path."""
    book = await current_book(conn)
    if has_default:
        return resolve(book, key, user=user, org=org, plan=plan, at=at, default=default)
    return resolve(book, key, user=user, org=org, plan=plan, at=at)
