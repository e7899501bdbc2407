"""Keyset pagination: newest first by (time, id), an opaque cursor, optional filters.

Keyset pages read the index from where the last page ended, so page 1,000 costs what
page 1 costs (an OFFSET would scan and throw away every earlier row).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from projections.views import Page

T = TypeVar("T")
MAX_LIMIT = 500


class BadCursor(ValueError):
    """A cursor this service did not hand out."""


def encode_cursor(at: datetime, id_: int | str) -> str:
    raw = msgspec.json.encode([at.isoformat(), id_])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int | str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id_ = msgspec.json.decode(raw, type=tuple[str, int | str])
        return datetime.fromisoformat(at), id_
    except (ValueError, msgspec.DecodeError) as error:
        raise BadCursor(f"invalid cursor: {error}") from None


class Where:
    """AND-ed conditions with numbered parameters, built from the filters that are set."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *values: Any) -> Where:
        """`condition` names its parameters {0}, {1}, ...; they are numbered here."""
        numbers = [f"${len(self.params) + i + 1}" for i in range(len(values))]
        self.conditions.append(condition.format(*numbers))
        self.params.extend(values)
        return self

    def when(self, value: Any, condition: str) -> Where:
        """Add `condition` with `value` unless the filter is unset (None)."""
        return self if value is None else self.add(condition, value)

    def sql(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"


async def page(
    conn: asyncpg.Connection,
    *,
    select: str,
    where: Where,
    time_column: str,
    cursor: str | None,
    limit: int,
    build: Callable[[asyncpg.Record], T],
    id_type: type[int] | type[str] = int,
) -> Page[T]:
    """One page of `select ... WHERE where` ordered by (time_column, id) descending."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor is not None:
        at, raw_id = decode_cursor(cursor)
        if not isinstance(raw_id, id_type):
            raise BadCursor("invalid cursor: wrong id type")
        id_ = raw_id
        where.add(f"({time_column}, id) < ({{0}}, {{1}})", at, id_)
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        f"""{select} WHERE {where.sql()}
            ORDER BY {time_column} DESC, id DESC LIMIT {limit + 1}""",
        *where.params,
    )
    items = [build(r) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last[time_column], last["id"]) if last is not None else None
    return Page(items=items, next_cursor=next_cursor)
