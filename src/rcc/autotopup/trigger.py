"""The billing follower's watcher that starts a charge when a debit takes a balance
below its owner's auto top-up threshold: once per crossing, in the batch's transaction."""

from __future__ import annotations

import asyncpg

from rcc.autotopup import store
from rcc.billing.follower import Move
from rcc.domain.events import AutoTopupTriggered, autotopup_stream
from rcc.store.event_store import StreamWrite, append


def crossed(move: Move, threshold: int) -> bool:
    """A debit from at or above the threshold to below it."""
    return move.before >= threshold > move.after


async def trigger_crossings(conn: asyncpg.Connection, moves: list[Move]) -> None:
    """One AUTO_TOPUP_TRIGGERED and one due charge for each crossing of this batch."""
    wallets = {m.wallet_id for m in moves if m.after < m.before}
    if not wallets:
        return
    enabled = await store.enabled_for(conn, sorted(wallets))  # a user's wallet id is theirs
    writes = []
    for move in moves:
        chosen = enabled.get(move.wallet_id)
        if chosen is None or not crossed(move, chosen.threshold_rcc):
            continue
        crossing = f"{move.wallet_id}:{move.position}"
        if await store.add_charge(conn, crossing, chosen.user_id, chosen.pack):
            event = AutoTopupTriggered(
                user_id=chosen.user_id,
                crossing=crossing,
                pack=chosen.pack,
                threshold_rcc=chosen.threshold_rcc,
                balance=move.after,
            )
            writes.append(
                StreamWrite(
                    stream_id=autotopup_stream(chosen.user_id), expected_version=-1, events=[event]
                )
            )
    if writes:
        await append(conn, writes, {"actor": "billing-follower"})
