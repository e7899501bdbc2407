"""An organisation and its wallet as they stand now, from their heads (never stale):
what the portal checks access against and shows as balance and usage."""

from __future__ import annotations

import asyncpg

from rcc.domain import org as orgs
from rcc.domain import wallet as wallets
from rcc.domain.events import org_stream, wallet_stream
from rcc.store.heads import read_heads


async def org_now(
    conn: asyncpg.Connection, org_id: str
) -> tuple[orgs.OrgState, wallets.WalletState]:
    """The org's state and its wallet's (empty states when there is no such org)."""
    heads = await read_heads(conn, [org_stream(org_id), wallet_stream(org_id)])
    org = heads[org_stream(org_id)].as_state(orgs.OrgState)
    wallet = heads[wallet_stream(org_id)].as_state(wallets.WalletState)
    return org, wallet


async def log_head(conn: asyncpg.Connection) -> tuple[int, int]:
    """(tx id, position) of the newest visible event: what a read of many streams waits for."""
    row = await conn.fetchrow(
        "SELECT tx_id::text::bigint AS tx_id, position FROM events ORDER BY position DESC LIMIT 1"
    )
    return (row["tx_id"], row["position"]) if row else (0, 0)


async def job_wallet(conn: asyncpg.Connection, job_id: str) -> str | None:
    """The wallet a job charges, from its head: an org job's events are on the org's
    wallet, so a read of it waits for that wallet, not the member's own."""
    found: str | None = await conn.fetchval(
        "SELECT state->>'wallet_id' FROM streams WHERE stream_id = $1", f"job-{job_id}"
    )
    return found
