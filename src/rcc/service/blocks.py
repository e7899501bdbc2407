"""Whether an account is blocked, read from its stream head (never stale): for the
commands whose handlers do not already hold the user (checkouts; holds at merge)."""

from __future__ import annotations

import asyncpg

from rcc.domain import user as users
from rcc.domain.blocking import account_block
from rcc.domain.errors import AccountBlocked
from rcc.domain.events import user_stream


async def user_block(pool: asyncpg.Pool, user_id: str) -> AccountBlocked | None:
    """The refusal for a blocked user (None: not blocked, or no such user)."""
    async with pool.acquire() as conn:
        state = await conn.fetchval(
            "SELECT state FROM streams WHERE stream_id = $1", user_stream(user_id)
        )
    if not state:
        return None
    return account_block(users.UserState(**{k: v for k, v in state.items() if k in _FIELDS}))


_FIELDS = frozenset(users.UserState.__struct_fields__)
