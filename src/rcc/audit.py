"""`rcc audit verify`: trust nothing but the events (and the anchors held outside).

Walks the whole log in commit order through the checks of `rcc.log_audit` (per-stream
hashes and versions, the log chain, the anchors, balances and releases), then checks
that the cached stream heads agree with what the events say. `verify_since` checks
only what came after an anchor it trusts, so its cost grows with what is new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from rcc.anchors import Anchor
from rcc.log_audit import AuditReport, Entry, LogAuditor, StreamState

__all__ = ["AuditReport", "entries_sql", "to_entry", "verify", "verify_since"]


def entries_sql(where: str = "") -> str:
    """Events joined with their log-chain link, in commit order (columns as Entry's)."""
    return f"""SELECT e.position, e.tx_id::text::bigint AS tx_id, e.stream_id, e.version,
                      e.type, e.data::text, e.metadata::text, e.recorded_at, e.hash,
                      c.seq, c.chain
                 FROM events e LEFT JOIN log_chain c ON c.position = e.position
                 {where}
                ORDER BY e.tx_id, e.position"""


def to_entry(row: asyncpg.Record) -> Entry:
    """A row of entries_sql() as the audit's Entry."""
    return Entry(*row.values())


async def verify(
    conn: asyncpg.Connection,
    progress: Callable[[int], None] | None = None,
    *,
    anchors: Sequence[Anchor] = (),
) -> AuditReport:
    """Recompute everything from the events; the report lists problems, first mismatch first."""
    auditor = LogAuditor(anchors, progress=progress)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        heads = await conn.fetch("SELECT stream_id, version, last_hash, state FROM streams")
        async for row in conn.cursor(entries_sql(), prefetch=5000):
            auditor.check(to_entry(row))
    report = auditor.finish()
    _check_heads(heads, auditor.streams, report)
    return report


async def verify_since(
    conn: asyncpg.Connection,
    anchor: Anchor,
    progress: Callable[[int], None] | None = None,
    *,
    batch: int = 5000,
) -> AuditReport:
    """Check only the events after a trusted anchor, and that the log still extends it.

    The anchor's head event must still be there, chained where the anchor says; every
    later event's stream hash, version and log-chain link are checked, the chain being
    recomputed from the anchor's. Balances need the whole history: full verification.
    """
    auditor = LogAuditor(start=anchor.head, check_balances=False, progress=progress)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await _check_anchor_head(conn, anchor, auditor)
        after = (anchor.tx_id, anchor.position)
        while True:
            rows = await conn.fetch(
                entries_sql("WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)") + " LIMIT $3",
                str(after[0]),
                after[1],
                batch,
            )
            if not rows:
                break
            page = [to_entry(r) for r in rows]
            await _seed_streams(conn, page, auditor)
            for entry in page:
                auditor.check(entry)
            after = (page[-1].tx_id, page[-1].position)
    return auditor.finish()


async def _check_anchor_head(conn: asyncpg.Connection, anchor: Anchor, auditor: LogAuditor) -> None:
    if anchor.events == 0:
        return
    row = await conn.fetchrow(
        """SELECT e.tx_id::text::bigint AS tx_id, c.seq, c.chain FROM events e
             LEFT JOIN log_chain c ON c.position = e.position WHERE e.position = $1""",
        anchor.position,
    )
    head = anchor.head
    if row is None:
        auditor.report.problem(
            anchor.position,
            f"position {anchor.position}: the anchor's head event is gone from the log",
        )
    elif (row["tx_id"], row["seq"], row["chain"]) != (head.tx_id, head.events, head.chain):
        auditor.report.problem(
            anchor.position,
            f"position {anchor.position}: the log no longer extends the anchor: its head "
            "event's transaction or chained link differs from what the anchor signed",
        )


async def _seed_streams(conn: asyncpg.Connection, page: list[Entry], auditor: LogAuditor) -> None:
    """Each stream's last event before this page, for streams met for the first time."""
    first: dict[str, int] = {}
    for entry in page:
        if entry.stream_id not in auditor.streams and entry.stream_id not in first:
            first[entry.stream_id] = entry.version
    wanted = [(s, v - 1) for s, v in first.items() if v > 1]
    rows = await conn.fetch(
        """SELECT e.stream_id, e.version, e.hash FROM events e
             JOIN unnest($1::text[], $2::bigint[]) AS w(stream_id, version)
               ON e.stream_id = w.stream_id AND e.version = w.version""",
        [s for s, _ in wanted],
        [v for _, v in wanted],
    )
    for row in rows:
        auditor.seed_stream(row["stream_id"], row["version"], bytes(row["hash"]))


def _check_heads(
    heads: list[asyncpg.Record], streams: dict[str, StreamState], report: AuditReport
) -> None:
    """The cached heads (version, last hash, folded balance) must agree with the events."""
    for head in sorted(heads, key=lambda r: r["stream_id"]):
        stream_id, version = head["stream_id"], head["version"]
        stream = streams.get(stream_id)
        if stream is None:
            if version > 0:
                report.problem(None, f"{stream_id}: head says v{version} but it has no events")
            continue
        if version != stream.version:
            report.problem(
                None, f"{stream_id}: head is at v{version} but the events end at v{stream.version}"
            )
        elif bytes(head["last_hash"]) != stream.hash:
            report.problem(None, f"{stream_id}: head hash differs from the last event's hash")
        if stream_id.startswith("wallet-"):
            state = head["state"]
            cached = state.get("balance") if isinstance(state, dict) else None
            if cached != stream.balance:
                report.problem(
                    None,
                    f"{stream_id}: cached balance {cached} but the events sum to {stream.balance}",
                )
    named = {h["stream_id"] for h in heads}
    for stream_id in sorted(set(streams) - named):
        report.problem(None, f"{stream_id}: events without a stream head")
