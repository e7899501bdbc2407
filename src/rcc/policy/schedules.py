"""The webhook retry schedule (`webhooks.retry_schedule_s`), read by the sender on every
tick, so an admin's change applies to the next failure without a restart."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from rcc.policy.book import resolve
from rcc.policy.keys import KEYS
from rcc.policy.store import current_book

RETRY_SCHEDULE = "webhooks.retry_schedule_s"
# The key's built-in default: 10 s doubling to 4 h, then 8 h (23.8 h after the first try).
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = tuple(KEYS[RETRY_SCHEDULE].default or ())  # type: ignore[arg-type]


async def retry_schedule_s(
    conn: asyncpg.Connection, default: Sequence[float] = ()
) -> tuple[float, ...]:
    """Seconds before each retry: the global policy, else `default` (the environment's
    RCC_WEBHOOK_RETRY_SCHEDULE_S), else the built-in schedule."""
    book = await current_book(conn)
    value = resolve(book, RETRY_SCHEDULE, default=list(default) or None)
    if isinstance(value, list):
        return tuple(float(v) for v in value)
    return DEFAULT_RETRY_SCHEDULE_S
