"""`rcc audit verify`: trust nothing but the events.

Walks every stream in version order, recomputes its hash chain, refolds every wallet
balance from its ledger events, and checks the ledger invariants of DESIGN.md. The
stream heads (cached state) must agree with what the events say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import msgspec

from rcc.domain.events import (
    CreditsReleased,
    CreditsReserved,
    LedgerEvent,
    UnknownEventType,
    decode_event,
)
from rcc.store.hashing import GENESIS, chain_link


@dataclass
class AuditReport:
    events: int = 0
    streams: int = 0
    wallets: int = 0
    problems: list[str] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Stream:
    stream_id: str
    version: int = 0
    hash: bytes = GENESIS
    balance: int = 0


@dataclass
class _Jobs:
    reserved: dict[str, int] = field(default_factory=dict)
    released: dict[str, list[int]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)


_EVENTS = """SELECT position, stream_id, version, type, data::text AS data_text,
                    metadata::text AS metadata_text, recorded_at, hash
               FROM events ORDER BY stream_id, version"""


async def verify(
    conn: asyncpg.Connection, progress: Callable[[int], None] | None = None
) -> AuditReport:
    """Recompute every chain and balance; the report lists problems, first mismatch first."""
    report = AuditReport()
    jobs = _Jobs()
    current: _Stream | None = None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        heads = {
            r["stream_id"]: (r["version"], bytes(r["last_hash"]), r["state"])
            for r in await conn.fetch("SELECT stream_id, version, last_hash, state FROM streams")
        }
        async for row in conn.cursor(_EVENTS, prefetch=5000):
            if current is None or row["stream_id"] != current.stream_id:
                if current is not None:
                    _close_stream(current, heads, report)
                current = _Stream(row["stream_id"])
                report.streams += 1
            _check_event(current, row, report, jobs)
            report.events += 1
            if progress and report.events % 50_000 == 0:
                progress(report.events)
        if current is not None:
            _close_stream(current, heads, report)
    # _close_stream took every head that has events; what is left has none.
    for stream_id, (version, _, _) in sorted(heads.items()):
        if version > 0:
            report.problems.append(f"{stream_id}: head says v{version} but it has no events")
    _check_jobs(jobs, report)
    return report


def _check_event(stream: _Stream, row: asyncpg.Record, report: AuditReport, jobs: _Jobs) -> None:
    where = f"{stream.stream_id} v{row['version']} (position {row['position']})"
    if row["version"] != stream.version + 1:
        report.problems.append(f"{where}: version gap after v{stream.version}")
    link = chain_link(
        stream.hash,
        stream.stream_id,
        row["version"],
        row["type"],
        row["data_text"],
        row["metadata_text"],
        row["recorded_at"],
    )
    if link != bytes(row["hash"]):
        report.problems.append(f"{where}: hash mismatch, the event or its chain was altered")
    stream.hash = bytes(row["hash"])  # follow the stored chain so one bad link is named once
    stream.version = row["version"]
    try:
        event = decode_event(row["type"], row["data_text"])
    except (msgspec.ValidationError, UnknownEventType) as error:
        report.problems.append(f"{where}: undecodable {row['type']}: {error}")
        return
    if isinstance(event, LedgerEvent):
        stream.balance += event.delta
        if stream.balance < 0:
            report.problems.append(f"{where}: balance went negative ({stream.balance})")
    if isinstance(event, CreditsReserved):
        jobs.reserved[event.job] = event.amount
    elif isinstance(event, CreditsReleased):
        jobs.released.setdefault(event.job, []).append(event.amount)
    elif row["type"] in {"job_succeeded", "job_failed", "job_cancelled"}:
        jobs.ended[stream.stream_id.removeprefix("job-")] = row["type"]


def _close_stream(
    stream: _Stream, heads: dict[str, tuple[int, bytes, object]], report: AuditReport
) -> None:
    head = heads.pop(stream.stream_id, None)
    if head is None:
        report.problems.append(f"{stream.stream_id}: events without a stream head")
        return
    version, last_hash, state = head
    if version != stream.version or last_hash != stream.hash:
        report.problems.append(
            f"{stream.stream_id}: head is at v{version} but the events end at v{stream.version}"
            if version != stream.version
            else f"{stream.stream_id}: head hash differs from the last event's hash"
        )
    if stream.stream_id.startswith("wallet-"):
        report.wallets += 1
        report.balances[stream.stream_id.removeprefix("wallet-")] = stream.balance
        cached = state.get("balance") if isinstance(state, dict) else None
        if cached != stream.balance:
            report.problems.append(
                f"{stream.stream_id}: cached balance {cached} "
                f"but the events sum to {stream.balance}"
            )


def _check_jobs(jobs: _Jobs, report: AuditReport) -> None:
    for job_id, amounts in sorted(jobs.released.items()):
        if len(amounts) > 1:
            report.problems.append(f"job {job_id}: released {len(amounts)} times")
        if job_id not in jobs.reserved:
            report.problems.append(f"job {job_id}: released without a reserve")
        elif any(a != jobs.reserved[job_id] for a in amounts):
            report.problems.append(
                f"job {job_id}: released {amounts} but reserved {jobs.reserved[job_id]}"
            )
        ended = jobs.ended.get(job_id)
        if ended not in {"job_failed", "job_cancelled"}:
            report.problems.append(f"job {job_id}: released but its job ended as {ended}")
    for job_id, ended in sorted(jobs.ended.items()):
        released = job_id in jobs.released
        if ended in {"job_failed", "job_cancelled"} and job_id in jobs.reserved and not released:
            report.problems.append(f"job {job_id}: {ended} without releasing its reserve")
