"""Wallet owners for projections whose rows name a user but whose events name a wallet.

Each such projection keeps its own small owner table (so it can be rebuilt alone):
WalletOpened fills it; a flush resolves the wallets its batch touched in one query.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from rcc.domain.events import WalletOpened


class WalletOwners:
    """The owners learnt in this batch, and a lookup for the others."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.opened: dict[str, tuple[str, str]] = {}

    def note(self, event: WalletOpened) -> None:
        self.opened[event.wallet_id] = (event.owner_kind, event.owner_id)

    async def user_ids(self, conn: asyncpg.Connection, wallet_ids: Iterable[str]) -> dict[str, str]:
        """wallet id -> owning user id, for the wallets a user owns."""
        owners = dict(self.opened)
        missing = sorted(set(wallet_ids) - owners.keys())
        if missing:
            rows = await conn.fetch(
                f"SELECT wallet_id, owner_kind, owner_id FROM {self.table}"
                " WHERE wallet_id = ANY($1::text[])",
                missing,
            )
            owners.update({r["wallet_id"]: (r["owner_kind"], r["owner_id"]) for r in rows})
        return {w: owner for w, (kind, owner) in owners.items() if kind == "user"}

    async def save(self, conn: asyncpg.Connection) -> None:
        """Remember the wallets opened in this batch."""
        if not self.opened:
            return
        await conn.execute(
            f"""INSERT INTO {self.table} (wallet_id, owner_kind, owner_id)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[])""",
            list(self.opened),
            [kind for kind, _ in self.opened.values()],
            [owner for _, owner in self.opened.values()],
        )


def wallet_of(stream_id: str) -> str:
    """The wallet id of a `wallet-<id>` stream."""
    return stream_id.removeprefix("wallet-")
