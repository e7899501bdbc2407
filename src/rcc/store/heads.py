"""Reading stream heads: the one way code outside a unit of work's lock reads a head.

A wallet's cached head keeps only its sums; its lots are rows of `wallet_lots`
(rcc.store.wallet_lots). A reader that took `streams.state` alone would see a wallet
without lots: no spendable balance, no next expiry (the fault that reverted the first
attempt). So every read of a head goes through `read_heads`, which puts a wallet's
lots back in, in the same statement (one snapshot: the lots agree with the sums).
Inside a transaction the unit of work locks heads and loads lots itself
(rcc.store.unit_of_work); tests/test_head_readers.py fails when a module reads a
whole head any other way.
"""

from __future__ import annotations

from typing import Any, TypeVar

import asyncpg
import msgspec

from rcc.store.wallet_lots import LOTS_OF_STREAM, is_wallet

S = TypeVar("S", bound=msgspec.Struct)


class Head(msgspec.Struct, frozen=True):
    """A stream's current version and cached folded state (version 0: no such stream)."""

    version: int
    state: dict[str, Any]

    def as_state(self, state_type: type[S]) -> S:
        return msgspec.convert(self.state, state_type)


async def read_heads(conn: asyncpg.Connection, stream_ids: list[str]) -> dict[str, Head]:
    """The heads of these streams, without locking them, each wallet with all its lots
    (those that do not exist come back as version 0 with an empty state)."""
    rows = await conn.fetch(
        f"""SELECT s.stream_id, s.version, s.state,
                   CASE WHEN s.stream_id LIKE 'wallet-%' THEN {LOTS_OF_STREAM} END AS lots
              FROM streams s WHERE s.stream_id = ANY($1::text[])""",
        stream_ids,
    )
    found = {r["stream_id"]: _head(r) for r in rows}
    return {sid: found.get(sid, Head(0, {})) for sid in stream_ids}


async def read_head(conn: asyncpg.Connection, stream_id: str) -> Head:
    """One head, as `read_heads` reads it."""
    return (await read_heads(conn, [stream_id]))[stream_id]


def _head(row: asyncpg.Record) -> Head:
    state: dict[str, Any] = row["state"]
    if is_wallet(row["stream_id"]):
        state = {**state, "lots": [list(lot) for lot in row["lots"]]}
    return Head(row["version"], state)
