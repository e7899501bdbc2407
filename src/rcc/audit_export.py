"""The log as auditors get it: JSON lines, one event each, with its hashes.

`GET /audit/events` pages and `rcc audit export` files carry the same items. `data`
and `metadata` are PostgreSQL's own jsonb text, spliced in verbatim (msgspec.Raw), so
an auditor can recompute every hash from the file alone: `verify_export` runs the same
checks as the live verification (rcc.log_audit), with no database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import asyncpg
import msgspec

from rcc.anchors import Anchor
from rcc.audit import entries_sql, to_entry
from rcc.log_audit import AuditReport, Entry, LogAuditor

MAX_PAGE = 200


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log with its per-stream hash and its log-chain link (null until
    the chain has been extended over it)."""

    position: int
    tx_id: int
    stream_id: str
    version: int
    type: str
    data: msgspec.Raw
    metadata: msgspec.Raw
    recorded_at: datetime
    hash: str
    seq: int | None = None
    chain: str | None = None


class AuditEventPage(msgspec.Struct, frozen=True, kw_only=True):
    """Events in commit order; pass `next_cursor` as `after` for the next page
    (None: nothing more is committed yet)."""

    items: list[AuditEvent]
    next_cursor: str | None = None


class UnknownPosition(LookupError):
    """`after` names a position the log does not hold."""


def to_item(entry: Entry) -> AuditEvent:
    """An Entry as the exported item."""
    return AuditEvent(
        position=entry.position,
        tx_id=entry.tx_id,
        stream_id=entry.stream_id,
        version=entry.version,
        type=entry.type,
        data=msgspec.Raw(entry.data_text.encode()),
        metadata=msgspec.Raw(entry.metadata_text.encode()),
        recorded_at=entry.recorded_at,
        hash=entry.hash.hex(),
        seq=entry.seq,
        chain=entry.chain.hex() if entry.chain is not None else None,
    )


def from_item(item: AuditEvent) -> Entry:
    """The exported item back as an Entry, bytes exactly as exported."""
    return Entry(
        position=item.position,
        tx_id=item.tx_id,
        stream_id=item.stream_id,
        version=item.version,
        type=item.type,
        data_text=bytes(item.data).decode(),
        metadata_text=bytes(item.metadata).decode(),
        recorded_at=item.recorded_at,
        hash=bytes.fromhex(item.hash),
        seq=item.seq,
        chain=bytes.fromhex(item.chain) if item.chain is not None else None,
    )


async def events_page(conn: asyncpg.Connection, after: int, limit: int) -> list[AuditEvent]:
    """Up to `limit` events after the one at position `after` (0: from the start), in
    commit order, committed ones only (a page never changes once read)."""
    start = (0, 0)
    if after:
        tx_id = await conn.fetchval(
            "SELECT tx_id::text::bigint FROM events WHERE position = $1", after
        )
        if tx_id is None:
            raise UnknownPosition(f"the log holds no event at position {after}")
        start = (tx_id, after)
    rows = await conn.fetch(
        entries_sql(
            """WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)
                 AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())"""
        )
        + " LIMIT $3",
        str(start[0]),
        start[1],
        min(limit, MAX_PAGE),
    )
    return [to_item(to_entry(r)) for r in rows]


async def export(conn: asyncpg.Connection, out: IO[bytes], *, batch: int = 5000) -> int:
    """Write the whole committed log as JSON lines; returns how many events."""
    encoder = msgspec.json.Encoder()
    count = 0
    where = """WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)
                 AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())"""
    after = (0, 0)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        while True:
            rows = await conn.fetch(
                entries_sql(where) + " LIMIT $3", str(after[0]), after[1], batch
            )
            if not rows:
                return count
            for row in rows:
                out.write(encoder.encode(to_item(to_entry(row))) + b"\n")
            count += len(rows)
            after = (rows[-1]["tx_id"], rows[-1]["position"])


async def export_over_http(base_url: str, token: str, out: IO[bytes]) -> int:
    """Write the log as JSON lines from a service's GET /audit/events (an auditor's
    token, no database connection); returns how many events."""
    import aiohttp

    decoder = msgspec.json.Decoder(AuditEventPage)
    encoder = msgspec.json.Encoder()
    headers = {"Authorization": f"Bearer {token}"}
    count, after = 0, "0"
    async with aiohttp.ClientSession(headers=headers, raise_for_status=True) as http:
        while True:
            url = f"{base_url.rstrip('/')}/audit/events?after={after}&limit={MAX_PAGE}"
            async with http.get(url) as answer:
                page = decoder.decode(await answer.read())
            for item in page.items:
                out.write(encoder.encode(item) + b"\n")
            count += len(page.items)
            if page.next_cursor is None:
                return count
            after = page.next_cursor


def read_export(lines: IO[bytes], report: AuditReport) -> Iterator[Entry]:
    """Entries from an export; a line that is not an event is a problem, not a crash."""
    decoder = msgspec.json.Decoder(AuditEvent)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield from_item(decoder.decode(line))
        except (msgspec.DecodeError, ValueError) as error:
            report.problem(None, f"line {number}: not an exported event: {error}")


def verify_export(
    path: Path,
    anchors: Sequence[Anchor] = (),
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Verify an export offline: the same checks as the live verification (without the
    cached stream heads, which are not part of the log)."""
    auditor = LogAuditor(anchors, progress=progress)
    with path.open("rb") as lines:
        for entry in read_export(lines, auditor.report):
            auditor.check(entry)
    return auditor.finish()
