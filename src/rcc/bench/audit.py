"""`rcc bench audit`: how fast the log is verified, next to how fast it is replayed.

In a bench database of its own (`rcc_bench_audit` by default), with the log of
`rcc bench projections` (the same generator, through rcc_append_v1):

1. **Chain.** Extends the log chain over every event (what the anchor worker does
   once on an old log, then a little at a time).
2. **Anchors.** Signs, with a throwaway key, the chain head after all but the last
   `--recent` events and the head of the log.
3. **Verify.** `rcc audit verify` with both anchors (everything: hashes, the log chain,
   anchors, balances, releases, cached heads); `--since-anchor` of the last `--recent`
   events, and from the empty log's anchor (the whole log through the same path);
   an export of the whole log and its offline verification.
4. **Replay** of every projection, for comparison.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg

from projections.registry import ALL
from rcc import anchors
from rcc.audit import verify, verify_since
from rcc.audit_export import export, verify_export
from rcc.bench.projections import _DATABASE_NAME, _fresh_database, generate
from rcc.bench.table import aligned, machine_line
from rcc.bootstrap import database_url
from rcc.config import Settings
from rcc.log_audit import AuditReport
from rcc.projector.replay import replay
from rcc.store.database import connect_owner
from rcc.store.log_chain import ChainHead, extend_chain

T = TypeVar("T")


async def _timed(run: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.perf_counter()
    found = await run()
    return found, time.perf_counter() - started


async def _head_at(conn: asyncpg.Connection, events: int) -> ChainHead:
    row = await conn.fetchrow(
        "SELECT seq, position, tx_id, chain FROM log_chain WHERE seq = $1", events
    )
    if row is None:
        return ChainHead()
    return ChainHead(
        events=row["seq"], position=row["position"], tx_id=row["tx_id"], chain=bytes(row["chain"])
    )


def _row(label: str, events: int, seconds: float, ok: str = "") -> list[str]:
    rate = f"{events / seconds:,.0f}" if seconds > 0 else "-"
    return [label, f"{events:,}", f"{seconds:.2f}", rate, ok]


def _ok(report: AuditReport) -> str:
    return "OK" if report.ok else f"FAILED: {report.problems[0]}"


async def run_audit_bench(settings: Settings, args: argparse.Namespace) -> int:
    """The whole benchmark; prints a table and returns 0 when every verification held."""
    if not _DATABASE_NAME.match(args.database):
        print("--database must start with rcc_bench (it may be dropped)", file=sys.stderr)
        return 2
    url, reused = await _fresh_database(database_url(settings), args.database, args.events)
    if not reused:
        print(f"[bench] generating about {args.events:,} events", file=sys.stderr)
        await generate(url, args.events)
    key = anchors.signing_key(secrets.token_hex(32))
    rows: list[list[str]] = []
    conn = await connect_owner(url)
    try:
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
        before = (await _head_at(conn, 0)).events
        print("[bench] extending the log chain", file=sys.stderr)
        head, chain_s = await _timed(lambda: extend_chain(conn))
        if head.events > before:
            rows.append(_row("extend the log chain (anchor worker)", head.events, chain_s))
        recent = min(args.recent, total // 2)
        now = datetime.now(UTC)
        old = anchors.sign(await _head_at(conn, total - recent), key, now)
        new = anchors.sign(head, key, now)
        empty = anchors.sign(ChainHead(), key, now)
        print("[bench] full verification", file=sys.stderr)
        full, full_s = await _timed(lambda: verify(conn, anchors=[old, new]))
        rows.append(_row("verify, full, 2 anchors", full.events, full_s, _ok(full)))
        since, since_s = await _timed(lambda: verify_since(conn, old))
        rows.append(
            _row(f"verify --since-anchor (last {recent:,})", since.events, since_s, _ok(since))
        )
        print("[bench] since-anchor verification of the whole log", file=sys.stderr)
        whole, whole_s = await _timed(lambda: verify_since(conn, empty))
        rows.append(_row("verify --since-anchor (empty log's)", whole.events, whole_s, _ok(whole)))
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "log.jsonl"
            print("[bench] export and offline verification", file=sys.stderr)
            with path.open("wb") as out:
                exported, export_s = await _timed(lambda: export(conn, out))
            rows.append(_row("export (JSON lines)", exported, export_s))
            started = time.perf_counter()
            offline = verify_export(path, [old, new])
            offline_s = time.perf_counter() - started
            rows.append(_row("verify --export, offline", offline.events, offline_s, _ok(offline)))
            size_mb = path.stat().st_size / 1e6
        print("[bench] replay", file=sys.stderr)
        replayed = await replay(conn, ALL, batch_size=5000)
        rows.append(_row("replay (all projections)", replayed.events, replayed.seconds))
    finally:
        await conn.close()
    load = f"1-min load {os.getloadavg()[0]:.2f} at the end"
    made = "reused" if reused else "generated"
    print(f"\nrcc bench audit: {total:,} events in {args.database} ({made})")
    print(machine_line("client and server share the machine", load))
    print(f"export size: {size_mb:,.1f} MB")
    columns = [("run", "<"), ("events", ">"), ("seconds", ">"), ("events/s", ">"), ("result", "<")]
    print("\n".join(aligned(columns, rows)))
    held = all(r.ok for r in (full, since, whole, offline))
    return 0 if held else 1
