"""Appending to and reading from the `events` table.

Reading the global log is commit-safe: each event carries its transaction id (xid8);
a reader takes only events of transactions older than the oldest one still running
(`pg_snapshot_xmin`) and orders them by (tx_id, position). A transaction that got its
position early but commits late is therefore read after it commits, never skipped,
and the order a reader sees never changes afterwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import AnyEvent, Event, decode_event, encode_data


class StreamVersionConflict(Exception):
    """A writer expected a stream version that is no longer current."""


class Checkpoint(msgspec.Struct, frozen=True, order=True):
    """A reader's place in the commit-safe order of the global log."""

    tx_id: int = 0
    position: int = 0


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    tx_id: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    hash: bytes = b""

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx_id, self.position)

    def decode(self) -> AnyEvent:
        return decode_event(self.type, self.data)


class StreamWrite(msgspec.Struct, frozen=True, kw_only=True):
    """Events for one stream, the version the writer saw (-1: any) and the new folded state.

    `metadata` holds one entry per event when the events came from different commands
    (a coalesced batch); otherwise every event gets the append call's metadata."""

    stream_id: str
    expected_version: int
    events: list[Event]
    state: Any = None
    metadata: list[dict[str, Any]] | None = None


class Appended(msgspec.Struct, frozen=True):
    position: int
    stream_id: str
    version: int
    tx_id: int
    recorded_at: datetime


_COLUMNS = (
    "position, tx_id::text::bigint AS tx_id, stream_id, version, type, data, metadata,"
    " recorded_at, hash"
)
_START = Checkpoint()


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(**dict(row))


async def append(
    conn: asyncpg.Connection,
    writes: list[StreamWrite],
    metadata: dict[str, Any] | None = None,
    *,
    with_: tuple[str, list[Any]] | None = None,
) -> list[Appended]:
    """Append to several streams atomically, in the caller's transaction. `with_`: a
    WITH clause (its parameters numbered from $8) sent in the same statement, such as
    the wallet_lots rows the events move (rcc.store.wallet_lots.lots_cte).

    Raises StreamVersionConflict when an expected version is stale, or when two
    writers create the same new stream at once.
    """
    streams, expected, states, owners, types, datas = [], [], [], [], [], []
    metas: list[str] = []
    shared = msgspec.json.encode(metadata or {}).decode()
    for index, write in enumerate(writes, start=1):
        streams.append(write.stream_id)
        expected.append(write.expected_version)
        states.append(None if write.state is None else msgspec.json.encode(write.state).decode())
        for n, event in enumerate(write.events):
            type_, data = encode_data(event)
            owners.append(index)
            types.append(type_)
            datas.append(data.decode())
            own = write.metadata[n] if write.metadata is not None else None
            metas.append(shared if own is None else msgspec.json.encode(own).decode())
    try:
        rows = await conn.fetch(
            (with_[0] if with_ else "") + "SELECT * FROM rcc_append_v3($1, $2, $3, $4, $5, $6, $7)",
            streams,
            expected,
            states,
            owners,
            types,
            datas,
            metas,
            *(with_[1] if with_ else []),
        )
    except asyncpg.UniqueViolationError as error:
        raise StreamVersionConflict(f"stream created concurrently: {error}") from None
    except asyncpg.PostgresError as error:
        if error.sqlstate == "RC001":  # raised by rcc_append_v3 for a stale version
            raise StreamVersionConflict(str(error)) from None
        raise
    return [
        Appended(
            r["out_position"],
            r["out_stream_id"],
            r["out_version"],
            int(r["out_tx_id"]),
            r["out_recorded_at"],
        )
        for r in rows
    ]


async def read_stream(
    conn: asyncpg.Connection, stream_id: str, from_version: int = 1
) -> list[RecordedEvent]:
    """One stream's events from a version on, in version order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version",
        stream_id,
        from_version,
    )
    return [_recorded(r) for r in rows]


async def read_all(
    conn: asyncpg.Connection, after: Checkpoint = _START, limit: int = 1000
) -> list[RecordedEvent]:
    """The global log after a checkpoint, in commit-safe order (see module doc).

    The ORDER BY names the table's columns so PostgreSQL walks the (tx_id, position)
    index and stops after `limit` rows; the hash, which followers never need, is left
    out (read_stream has it).
    """
    rows = await conn.fetch(
        """SELECT e.position, e.tx_id::text::bigint AS tx_id, e.stream_id, e.version, e.type,
                  e.data, e.metadata, e.recorded_at
             FROM events e
            WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)
              AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.tx_id, e.position
            LIMIT $3""",
        str(after.tx_id),
        after.position,
        limit,
    )
    return [_recorded(r) for r in rows]


async def head(conn: asyncpg.Connection) -> Checkpoint:
    """The checkpoint of the last event a commit-safe reader can see now."""
    row = await conn.fetchrow(
        """SELECT e.tx_id::text::bigint AS tx_id, e.position FROM events e
            WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.tx_id DESC, e.position DESC LIMIT 1"""
    )
    return Checkpoint(row["tx_id"], row["position"]) if row else Checkpoint()


async def read_stream_until(
    conn: asyncpg.Connection,
    stream_id: str,
    *,
    position: int | None = None,
    at: datetime | None = None,
) -> list[RecordedEvent]:
    """A stream's events up to a global position and/or a moment (for time travel)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM events
             WHERE stream_id = $1
               AND ($2::bigint IS NULL OR position <= $2)
               AND ($3::timestamptz IS NULL OR recorded_at <= $3)
             ORDER BY version""",
        stream_id,
        position,
        at,
    )
    return [_recorded(r) for r in rows]
