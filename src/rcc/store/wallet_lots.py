"""`wallet_lots`: a wallet's lots as rows, kept in the transaction of its events (h9).

The cached wallet head keeps only the sums (balance, held, open_jobs, lot_seq, pinned,
the daily counters). A reserve used to decode every lot from the head, sort them all
and rewrite the whole (TOASTed, 69 kB at 1,000 lots) head; now the unit of work reads
a wallet's lots from this table under the head's lock, either all of them or only the
first few in spending order that still have credits (what a reserve draws from),
and writes back only the rows that changed. The domain is untouched: it sees a
WalletState whose `lots` hold the loaded lots.

A partial load is exact for a draw whenever the loaded lots cover it: they are a
prefix of the spending order (read_lots orders by rcc.domain.lots.spending_key),
and the lots a debit may draw now are that prefix less the ones expiring within the
draw guard. When they do not cover it the caller loads a wider front, then every lot,
and decides again (rcc.service.lot_window). Lots that were not loaded are never deleted or changed.

A row carries everything the domain reads of its lot, its expiry too: a lot ended by
CREDITS_EXPIRED (or a month's lot superseded before its date) ends at that instant
(rcc.domain.wallet.evolve), and its row, kept while a job still pins it, says so. A
job's end loads only the lots it drew; its release must see them ended and come back
as a new lot, not into them.

Outside a unit of work, heads are read with their lots by rcc.store.heads.

Like the head, the table is derived from the events: migration 0026 fills it from the
heads, and tests check it against the lots folded from the log (tests/test_lots_table.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from rcc.domain.lots import Lot
from rcc.domain.wallet import WalletState

# Lots a reserve loads: the wallet's first lots in spending order with credits left
# (a group of reserves on one wallet loads one more per reserve). A reserve usually
# draws from one lot; every row loaded is decoded, ranked and diffed in Python, so the
# front is small. When it does not cover a draw, `wider` fronts are read, then all.
FRONT_LOTS = 2
WIDEN = 8
WIDEST_FRONT = 128


def wider(front: int) -> int | None:
    """The front to read after `front` lots fell short: WIDEN times as many, or every
    lot (None) past WIDEST_FRONT, so a wallet of many small or expiring lots reads a few
    dozen rows per reserve rather than all of them."""
    wide = max(front, FRONT_LOTS) * WIDEN
    return None if wide > WIDEST_FRONT else wide


Row = list[Any]  # a lot as its JSON array: [id, source, amount, remaining, priority, ...]


def remaining_sql(wallet_id: str, lot_id: str) -> str:
    """SQL for what is left of one lot (NULL once it is gone), given SQL expressions for
    its wallet id and lot id: for a statement that needs a few lots, not a whole wallet."""
    return f"""(SELECT l.remaining FROM wallet_lots l
                 WHERE l.stream_id = 'wallet-' || {wallet_id} AND l.lot_id = {lot_id})"""


def is_wallet(stream_id: str) -> bool:
    """Wallet streams are the only ones with lots."""
    return stream_id.startswith("wallet-")


# A lot as the columns of a rcc.domain.lots.Lot, in its field order. Plain rows: building
# jsonb in the server cost ~11 µs a lot, ten times the scan.
_LOT = """l.lot_id, l.source, l.amount, l.remaining, l.priority, l.effective_us,
          CASE WHEN l.no_expiry THEN NULL ELSE l.expires_us END AS expires_us, l.ref"""
_SPENDING = "l.priority, l.no_expiry, l.expires_us, l.effective_us, l.lot_no"

# Every lot of the wallet whose stream id is `s.stream_id`, as an array of rows in the
# order they were made (a subquery for rcc.store.heads: one statement, one snapshot).
LOTS_OF_STREAM = """ARRAY(SELECT ROW(l.lot_id, l.source, l.amount, l.remaining, l.priority,
                      l.effective_us, CASE WHEN l.no_expiry THEN NULL ELSE l.expires_us END,
                      l.ref)
                 FROM wallet_lots l WHERE l.stream_id = s.stream_id ORDER BY l.lot_no)"""


async def read_lots(
    conn: asyncpg.Connection, stream_ids: Sequence[str], front: Sequence[int | None]
) -> dict[str, list[Row]]:
    """Each wallet's lots in the order they were made: all (front None) or the first
    `front` in spending order with credits left. Run after the heads are locked: its
    own statement, so its snapshot sees every write committed before the lock was
    granted (a subquery of the locking statement would read an older snapshot)."""
    found: dict[str, list[Row]] = {sid: [] for sid in stream_ids}
    whole = [sid for sid, n in zip(stream_ids, front, strict=True) if n is None]
    firsts = [(sid, n) for sid, n in zip(stream_ids, front, strict=True) if n is not None]
    rows: list[asyncpg.Record] = []
    if whole:
        rows += await conn.fetch(
            f"""SELECT l.stream_id, {_LOT} FROM wallet_lots l
                 WHERE l.stream_id = ANY($1::text[]) ORDER BY l.stream_id, l.lot_no""",
            whole,
        )
    if firsts:
        rows += await conn.fetch(
            f"""SELECT w.stream_id, {_LOT}
                  FROM unnest($1::text[], $2::int[]) AS w(stream_id, front)
                  CROSS JOIN LATERAL (
                       SELECT * FROM wallet_lots l
                        WHERE l.stream_id = w.stream_id AND l.remaining > 0
                        ORDER BY {_SPENDING} LIMIT w.front) l
                 ORDER BY w.stream_id, l.lot_no""",
            [sid for sid, _ in firsts],
            [n for _, n in firsts],
        )
    for row in rows:
        found[row["stream_id"]].append(list(row.values())[1:])
    return found


async def read_named_lots(
    conn: asyncpg.Connection, stream_id: str, lot_ids: Sequence[str]
) -> list[Row]:
    """These lots of a wallet (those that still exist), in the order they were made."""
    rows = await conn.fetch(
        f"""SELECT {_LOT} FROM wallet_lots l
             WHERE l.stream_id = $1 AND l.lot_id = ANY($2::text[]) ORDER BY l.lot_no""",
        stream_id,
        list(lot_ids),
    )
    return [list(row.values()) for row in rows]


def lot_rows(state: WalletState) -> dict[str, Row]:
    """The state's lots by id, as the JSON arrays the table gives back."""
    return {lot.id: msgspec.to_builtins(lot) for lot in state.lots}


def lot_number(lot_id: str | Lot) -> int:
    """The number in a lot's id (L<n>): lots are made in this order."""
    if isinstance(lot_id, Lot):
        lot_id = lot_id.id
    return int(lot_id[1:]) if lot_id[1:].isdigit() else 0


class LotChanges(msgspec.Struct):
    """What one transaction writes to `wallet_lots`."""

    gone: list[tuple[str, str]] = []  # (stream, lot) no longer kept
    moved: list[tuple[str, str, int]] = []  # (stream, lot, remaining): only that changed
    upserts: list[tuple[str, Lot]] = []  # new lots, and lots changed otherwise

    def add(self, stream_id: str, seen: dict[str, Row], after: WalletState) -> None:
        """The difference between the lots loaded (`seen`) and the lots after."""
        kept = lot_rows(after)
        self.gone += [(stream_id, lot_id) for lot_id in seen if lot_id not in kept]
        for lot in after.lots:
            before, now = seen.get(lot.id), kept[lot.id]
            if before == now:
                continue
            if before is not None and before[:3] + before[4:] == now[:3] + now[4:]:
                self.moved.append((stream_id, lot.id, lot.remaining))  # a draw or a return
            else:
                self.upserts.append((stream_id, lot))


def lots_cte(changes: LotChanges, first: int) -> tuple[str, list[Any]] | None:
    """The changes as a WITH clause (its parameters numbered from `first`) to put in
    front of another statement of the transaction: the rows go in its round trip.

    Only the parts with rows are sent. A reserve or a release only moves remainders
    (three arrays); the whole row (eleven) goes only for new or otherwise changed lots:
    every array element is encoded one by one by the driver, on the write path."""
    parts: list[str] = []
    args: list[Any] = []

    def params(*arrays: list[Any]) -> list[str]:
        numbers = [f"${first + len(args) + i}" for i in range(len(arrays))]
        args.extend(arrays)
        return numbers

    if changes.gone:
        n = params([s for s, _ in changes.gone], [lot_id for _, lot_id in changes.gone])
        parts.append(f"""lots_gone AS (
               DELETE FROM wallet_lots w
                USING unnest({n[0]}::text[], {n[1]}::text[]) AS d(stream_id, lot_id)
                WHERE w.stream_id = d.stream_id AND w.lot_id = d.lot_id)""")
    if changes.moved:
        moved = changes.moved
        n = params([m[0] for m in moved], [m[1] for m in moved], [m[2] for m in moved])
        parts.append(f"""lots_moved AS (
               UPDATE wallet_lots w SET remaining = m.remaining
                 FROM unnest({n[0]}::text[], {n[1]}::text[], {n[2]}::bigint[])
                      AS m(stream_id, lot_id, remaining)
                WHERE w.stream_id = m.stream_id AND w.lot_id = m.lot_id)""")
    if changes.upserts:
        lots = [lot for _, lot in changes.upserts]
        n = params(
            [s for s, _ in changes.upserts],
            [lot.id for lot in lots],
            [lot.source for lot in lots],
            [lot.amount for lot in lots],
            [lot.remaining for lot in lots],
            [lot.priority for lot in lots],
            [lot.effective_us for lot in lots],
            [lot.expires_us is None for lot in lots],
            [lot.expires_us or 0 for lot in lots],
            [lot_number(lot.id) for lot in lots],
            [lot.ref for lot in lots],
        )
        parts.append(f"""lots_upserted AS (
               INSERT INTO wallet_lots (stream_id, lot_id, source, amount, remaining,
                                        priority, effective_us, no_expiry, expires_us,
                                        lot_no, ref)
               SELECT * FROM unnest({n[0]}::text[], {n[1]}::text[], {n[2]}::text[],
                                    {n[3]}::bigint[], {n[4]}::bigint[], {n[5]}::int[],
                                    {n[6]}::bigint[], {n[7]}::bool[], {n[8]}::bigint[],
                                    {n[9]}::bigint[], {n[10]}::text[])
               ON CONFLICT (stream_id, lot_id) DO UPDATE
                  SET remaining = EXCLUDED.remaining, no_expiry = EXCLUDED.no_expiry,
                      expires_us = EXCLUDED.expires_us)""")
    if not parts:
        return None
    return "WITH " + ",\n           ".join(parts) + "\n", args


async def write_lots(conn: asyncpg.Connection, changes: LotChanges) -> None:
    """Apply the changes in the caller's transaction (one statement of their own)."""
    if cte := lots_cte(changes, 1):
        await conn.execute(cte[0] + "SELECT 1", *cte[1])
