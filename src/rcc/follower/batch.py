"""One batch in one transaction, for any set of followers.

A batch: take the free followers' locks, read their checkpoints, read the log after
the oldest of them in commit-safe order, decode up to the first unknown type, hand
each follower the events after its own checkpoint, move the checkpoints, commit. A
crash anywhere before the commit leaves nothing; after it, everything. So `kill -9`
mid-batch neither loses nor doubles an event in the followers' own rows. (A
subscriber's effects outside the database are at-least-once: it must make them
idempotent, as the adapter does.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from rcc.follower import checkpoints
from rcc.follower.decoding import Blocked, Decoded, decode_known
from rcc.store.event_store import Checkpoint, read_all


class Follower(Protocol):
    """What the runtime needs of a follower: its checkpoint name and how it applies
    a batch of decoded events (inside the batch's transaction, on `conn`)."""

    @property
    def name(self) -> str: ...

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None: ...


@dataclass
class BatchResult:
    """What one batch did: the followers it held, the events it applied to them, and
    where it stopped if it met an event type this version does not know."""

    followers: list[str] = field(default_factory=list)
    decoded: list[Decoded] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    blocked: Blocked | None = None

    @property
    def events(self) -> int:
        return len(self.decoded)


async def apply_batch(
    conn: asyncpg.Connection,
    targets: Sequence[tuple[Follower, Checkpoint]],
    decoded: Sequence[Decoded],
) -> None:
    """Hand each follower the events after its own checkpoint (caller's transaction)."""
    start = min((after for _, after in targets), default=Checkpoint())
    for follower, after in targets:
        # Most batches find every follower at the same checkpoint: no copy then.
        mine = decoded if after <= start else [d for d in decoded if d[0].checkpoint > after]
        if mine:
            await follower.apply(conn, mine)


async def follow_batch(
    conn: asyncpg.Connection, followers: Sequence[Follower], *, limit: int = 1000
) -> BatchResult:
    """Apply up to `limit` events to every free follower, in one transaction."""
    async with conn.transaction():
        locked = await checkpoints.try_lock(conn, [f.name for f in followers])
        stored = await checkpoints.load(conn, locked)
        targets = [(f, stored[f.name]) for f in followers if f.name in stored]
        if not targets:
            return BatchResult()
        names = [f.name for f, _ in targets]
        records = await read_all(conn, min(after for _, after in targets), limit)
        decoded, blocked = decode_known(records)
        last = decoded[-1][0].checkpoint if decoded else None
        if last is not None:
            await apply_batch(conn, targets, decoded)
            await checkpoints.save(conn, [f.name for f, after in targets if after < last], last)
        if blocked is not None:
            stuck = [f.name for f, after in targets if after < blocked.checkpoint]
            await checkpoints.mark_blocked(conn, stuck, blocked)
    return BatchResult(names, decoded, last, blocked)
