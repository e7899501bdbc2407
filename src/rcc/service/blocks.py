"""Whether an account is blocked, read from its stream head (never stale): for the
commands whose handlers do not already hold the user (checkouts), and a wallet's owner
for service holds and usage."""

from __future__ import annotations

import asyncpg

from rcc.domain import org as orgs
from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.blocking import account_block
from rcc.domain.errors import AccountBlocked
from rcc.domain.events import org_stream, user_stream
from rcc.store.heads import read_head
from rcc.store.unit_of_work import UnitOfWork


async def user_block(pool: asyncpg.Pool, user_id: str) -> AccountBlocked | None:
    """The refusal for a blocked user (None: not blocked, or no such user)."""
    async with pool.acquire() as conn:
        state = (await read_head(conn, user_stream(user_id))).state
    if not state:
        return None
    return account_block(users.UserState(**{k: v for k, v in state.items() if k in _FIELDS}))


_FIELDS = frozenset(users.UserState.__struct_fields__)


async def account_block_of(
    pool: asyncpg.Pool, owner_kind: str, owner_id: str
) -> AccountBlocked | None:
    """The refusal when a wallet's owner (a user, or an org for `owner_kind` "org") is
    blocked, for spending that no request carries (an auto top-up's charge)."""
    if owner_kind != "org":
        return await user_block(pool, owner_id)
    async with pool.acquire() as conn:
        head = await read_head(conn, org_stream(owner_id))
    return account_block(head.as_state(orgs.OrgState)) if head.state else None


async def owner_block(uow: UnitOfWork, wallet: wallets.WalletState) -> AccountBlocked | None:
    """The refusal when a wallet's owner (a user, or an org) is blocked: a service's
    hold or usage on it is spending like a job (read from the owner's stream head)."""
    if wallet.owner_kind == "org":
        org = (await uow.peek(org_stream(wallet.owner_id))).as_state(orgs.OrgState)
        return account_block(org)
    user = (await uow.peek(user_stream(wallet.owner_id))).as_state(users.UserState)
    return account_block(user)
