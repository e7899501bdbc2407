"""The audit's checks over the log in commit order, with no I/O of their own.

`rcc audit verify` feeds them from the database, `rcc audit verify --export` from a
file, so the live and the offline verification are the same code. For each event, in
commit order (tx_id, position):

* its stream's versions follow one another and its per-stream hash recomputes;
* the log chain is recomputed from the start (or from a trusted anchor) and, where the
  event carries a stored link, that link must follow from the stored link before it;
* every anchor must be met: after `events` events the log is at the anchor's position
  and the recomputed chain equals the signed one;
* wallet balances never go negative and every release matches one reserve of a failed
  or cancelled job; every credit lot's history holds (`rcc.lot_audit`) (full
  verification only: these need the whole history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from rcc.anchors import Anchor
from rcc.domain.events import (
    CreditsHeld,
    CreditsReleased,
    CreditsReserved,
    HoldReleased,
    HoldSettled,
    LedgerEvent,
    UnknownEventType,
    decode_event,
)
from rcc.lot_audit import LotAudit
from rcc.store.hashing import GENESIS, chain_link, log_link
from rcc.store.log_chain import ChainHead

_ENDED = frozenset({"job_succeeded", "job_failed", "job_cancelled"})


@dataclass(slots=True, frozen=True)
class Entry:
    """One event as the audit needs it; `seq` and `chain` are its stored log-chain link
    (None while it is not chained yet)."""

    position: int
    tx_id: int
    stream_id: str
    version: int
    type: str
    data_text: str
    metadata_text: str
    recorded_at: datetime
    hash: bytes
    seq: int | None
    chain: bytes | None


@dataclass
class AuditReport:
    events: int = 0
    streams: int = 0
    wallets: int = 0
    problems: list[str] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    chain_head: ChainHead = field(default_factory=ChainHead)
    anchors_held: int = 0
    exact_positions: list[int] = field(default_factory=list)
    range_positions: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_position(self) -> int | None:
        """The first position the evidence names exactly; failing that, the first
        position not covered by an anchor that still holds."""
        found = self.exact_positions or self.range_positions
        return min(found) if found else None

    def problem(self, position: int | None, text: str, *, exact: bool = True) -> None:
        """Record a problem, with the position it names when it names one."""
        self.problems.append(text)
        if position is not None:
            (self.exact_positions if exact else self.range_positions).append(position)


@dataclass(slots=True)
class StreamState:
    version: int = 0
    hash: bytes = GENESIS
    balance: int = 0


@dataclass
class _Jobs:
    reserved: dict[str, int] = field(default_factory=dict)
    released: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (amount, captured)
    ended: dict[str, str] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # service holds: hold -> amount
    settled: dict[str, list[int]] = field(default_factory=dict)  # hold -> [returned + captured]


class LogAuditor:
    """Feed it every event after `start` in commit order, then call finish()."""

    def __init__(
        self,
        anchors: Sequence[Anchor] = (),
        *,
        start: ChainHead | None = None,
        check_balances: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.start = start or ChainHead()
        self.report = AuditReport()
        self.streams: dict[str, StreamState] = {}
        self.check_balances = check_balances
        self._progress = progress
        self._jobs = _Jobs()
        self._lots = LotAudit()
        self._parked: dict[str, dict[int, Entry]] = {}  # stream -> version -> early entry
        self._seq, self._chain = self.start.events, self.start.chain
        self._last_entry: Entry | None = None
        self._stored_seq, self._stored_chain = self.start.events, self.start.chain
        self._unchained_at: int | None = None
        self._anchors = sorted(anchors, key=lambda a: a.events)
        self._due = {a.events: a for a in self._anchors}
        self._held: dict[int, bool] = {}  # anchor events -> held
        self._seen_heads = {a.position: False for a in self._anchors}
        # the position of the event right after each anchor (and after the start)
        self._after = {a.events + 1: 0 for a in self._anchors} | {self.start.events + 1: 0}
        for anchor in self._anchors:
            if anchor.events <= self.start.events:  # e.g. the empty log's anchor
                self._meet_start(anchor)

    def _meet_start(self, anchor: Anchor) -> None:
        held = anchor.head == self.start
        self._held[anchor.events] = held
        if not held:
            self.report.problem(
                anchor.position,
                f"position {anchor.position}: the anchor of {anchor.events} events is not "
                "where this verification starts",
            )

    def seed_stream(self, stream_id: str, version: int, last_hash: bytes) -> None:
        """A stream's state before `start` (verification since an anchor)."""
        self.streams[stream_id] = StreamState(version, last_hash)

    def check(self, entry: Entry) -> None:
        """All the checks one event is subject to."""
        self.report.events += 1
        self._check_stream(entry)
        in_step = self._stored_chain == self._chain and self._stored_seq == self._seq
        self._seq += 1
        self._chain = log_link(self._chain, self._seq, entry.position, entry.tx_id, entry.hash)
        self._last_entry = entry
        self._check_stored_link(entry, self._chain if in_step else None)
        if entry.position in self._seen_heads:
            self._seen_heads[entry.position] = True
        if self._seq in self._after:
            self._after[self._seq] = entry.position
        if self._seq in self._due:
            self._meet_anchor(self._due[self._seq], entry)
        if self._progress and self.report.events % 50_000 == 0:
            self._progress(self.report.events)

    def finish(self) -> AuditReport:
        """The checks that need the whole walk; returns the report."""
        for anchor in self._anchors:
            if anchor.events not in self._held:
                self._anchor_beyond_the_end(anchor)
        self._report_gaps()
        report = self.report
        report.anchors_held = sum(self._held.values())
        report.chain_head = self._head()
        for stream_id, state in self.streams.items():
            if stream_id.startswith("wallet-") and self.check_balances:
                report.wallets += 1
                report.balances[stream_id.removeprefix("wallet-")] = state.balance
        if self.check_balances:
            _check_jobs(self._jobs, report)
        return report

    def _head(self) -> ChainHead:
        """Where the recomputed chain stands now."""
        last = self._last_entry
        if last is None:
            return self.start
        return ChainHead(
            events=self._seq, position=last.position, tx_id=last.tx_id, chain=self._chain
        )

    def _check_stream(self, entry: Entry) -> None:
        """The stream's checks, in the stream's version order.

        Commit-safe order is (tx_id, position), and a transaction id is handed out at a
        transaction's first write, not at its commit: a transaction that began first
        (say, it stored a workflow body) can append a wallet's next version after a
        younger transaction appended the one before. So a version that comes early is
        parked until the versions before it arrive; finish() names any that never do.
        """
        stream = self.streams.get(entry.stream_id)
        if stream is None:
            stream = self.streams[entry.stream_id] = StreamState()
            self.report.streams += 1
        if entry.version > stream.version + 1:
            self._parked.setdefault(entry.stream_id, {})[entry.version] = entry
            return
        self._apply_to_stream(stream, entry)
        parked = self._parked.get(entry.stream_id)
        while parked and stream.version + 1 in parked:
            self._apply_to_stream(stream, parked.pop(stream.version + 1))
        if parked is not None and not parked:
            del self._parked[entry.stream_id]

    def _report_gaps(self) -> None:
        """Versions that came without the ones before them: something was removed."""
        for stream_id, parked in sorted(self._parked.items()):
            first = parked[min(parked)]
            version = self.streams[stream_id].version
            self.report.problem(first.position, f"{_where(first)}: version gap after v{version}")

    def _apply_to_stream(self, stream: StreamState, entry: Entry) -> None:
        if entry.version != stream.version + 1:
            self.report.problem(
                entry.position, f"{_where(entry)}: out of order after v{stream.version}"
            )
        link = chain_link(
            stream.hash,
            entry.stream_id,
            entry.version,
            entry.type,
            entry.data_text,
            entry.metadata_text,
            entry.recorded_at,
        )
        if link != entry.hash:
            self.report.problem(
                entry.position,
                f"{_where(entry)}: hash mismatch, the event or its chain was altered",
            )
        stream.hash = entry.hash  # follow the stored chain so one bad link is named once
        stream.version = entry.version
        if self.check_balances:
            self._fold(stream, entry)

    def _fold(self, stream: StreamState, entry: Entry) -> None:
        try:
            event = decode_event(entry.type, entry.data_text)
        except (msgspec.ValidationError, UnknownEventType) as error:
            self.report.problem(
                entry.position, f"{_where(entry)}: undecodable {entry.type}: {error}"
            )
            return
        if entry.stream_id.startswith("wallet-"):
            self._lots.see(
                entry.stream_id,
                event,
                entry.recorded_at,
                stream.balance,
                lambda text: self.report.problem(entry.position, f"{_where(entry)}: {text}"),
            )
        if isinstance(event, LedgerEvent):
            stream.balance += event.delta
            if stream.balance < 0:
                self.report.problem(
                    entry.position, f"{_where(entry)}: balance went negative ({stream.balance})"
                )
        if isinstance(event, CreditsReserved):
            self._jobs.reserved[event.job] = event.amount
        elif isinstance(event, CreditsReleased):
            self._jobs.released.setdefault(event.job, []).append((event.amount, event.captured))
        elif isinstance(event, CreditsHeld):
            self._jobs.held[event.hold] = event.amount
        elif isinstance(event, HoldReleased):
            self._jobs.settled.setdefault(event.hold, []).append(event.amount + event.captured)
        elif isinstance(event, HoldSettled):
            self._jobs.settled.setdefault(event.hold, []).append(event.held)
        elif entry.type in _ENDED:
            self._jobs.ended[entry.stream_id.removeprefix("job-")] = entry.type

    def _check_stored_link(self, entry: Entry, recomputed: bytes | None) -> None:
        """The stored link must follow from the stored link before it (an edit, a
        deletion or a move is named where it happened, not only at the next anchor).
        `recomputed` is that link already, while the stored chain agrees with the
        recomputed one (the usual case: one hash per event, not two)."""
        if entry.seq is None or entry.chain is None:
            if self._unchained_at is None:
                self._unchained_at = entry.position
            return
        if self._unchained_at is not None:
            self.report.problem(
                self._unchained_at,
                f"position {self._unchained_at}: not in the log chain, yet events after it "
                "are: it was inserted into the chained past",
            )
            self._unchained_at = None
        expected = self._stored_seq + 1
        if entry.seq != expected:
            self.report.problem(
                entry.position,
                f"position {entry.position}: the log chain has it as event {entry.seq}, but it "
                f"follows event {self._stored_seq}: events were removed, added or reordered",
            )
        elif (
            recomputed
            or log_link(self._stored_chain, entry.seq, entry.position, entry.tx_id, entry.hash)
        ) != entry.chain:
            self.report.problem(
                entry.position,
                f"position {entry.position}: log chain link broken: the event's content, hash, "
                "position or order changed after it was chained",
            )
        self._stored_seq, self._stored_chain = entry.seq, entry.chain

    def _meet_anchor(self, anchor: Anchor, entry: Entry) -> None:
        held = (
            entry.position == anchor.position
            and entry.tx_id == anchor.tx_id
            and self._chain.hex() == anchor.chain
        )
        self._held[anchor.events] = held
        if not held:
            since = self._last_held_before(anchor)
            self.report.problem(
                self._after.get(since + 1) or entry.position,
                f"the log no longer extends the anchor of {anchor.events} events (position "
                f"{anchor.position}): event {anchor.events} is now position {entry.position} "
                f"and the chain differs; the change lies after event {since} "
                f"(position {self._position_of(since)}) and at or before event {anchor.events}",
                exact=False,
            )

    def _anchor_beyond_the_end(self, anchor: Anchor) -> None:
        self._held[anchor.events] = False
        if not self._seen_heads.get(anchor.position):
            position, exact = anchor.position, True
        else:
            position, exact = self._after.get(self._last_held_before(anchor) + 1) or 0, False
        self.report.problem(
            position,
            f"position {anchor.position}: the anchor covers {anchor.events} events up to "
            f"position {anchor.position}, but the log holds only {self._seq} (it ends at "
            f"position {self._head().position}): {anchor.events - self._seq} event(s) it covers "
            "were removed",
            exact=exact,
        )

    def _last_held_before(self, anchor: Anchor) -> int:
        held = [
            a.events for a in self._anchors if a.events < anchor.events and self._held.get(a.events)
        ]
        return max(held, default=self.start.events)

    def _position_of(self, events: int) -> int:
        if events == self.start.events:
            return self.start.position
        return next((a.position for a in self._anchors if a.events == events), 0)


def _where(entry: Entry) -> str:
    return f"{entry.stream_id} v{entry.version} (position {entry.position})"


def _check_holds(jobs: _Jobs, report: AuditReport) -> None:
    """Every service hold ends at most once, and its end accounts for exactly what it held
    (captured + returned); nothing ends a hold that never began."""
    for hold_id, ends in sorted(jobs.settled.items()):
        if len(ends) > 1:
            report.problem(None, f"hold {hold_id}: ended {len(ends)} times")
        if hold_id not in jobs.held:
            report.problem(None, f"hold {hold_id}: ended without a HOLD")
        elif any(total != jobs.held[hold_id] for total in ends):
            report.problem(None, f"hold {hold_id}: settled {ends} but held {jobs.held[hold_id]}")


def _check_jobs(jobs: _Jobs, report: AuditReport) -> None:
    for job_id, releases in sorted(jobs.released.items()):
        if len(releases) > 1:
            report.problem(None, f"job {job_id}: released {len(releases)} times")
        if job_id not in jobs.reserved:
            report.problem(None, f"job {job_id}: released without a reserve")
        elif any(a + c != jobs.reserved[job_id] for a, c in releases):
            report.problem(
                None, f"job {job_id}: released {releases} but reserved {jobs.reserved[job_id]}"
            )
        # A release that settles a capture follows a success; any other, a failure.
        allowed = {"job_succeeded"} if releases[0][1] else {"job_failed", "job_cancelled"}
        ended = jobs.ended.get(job_id)
        if ended not in allowed:
            report.problem(None, f"job {job_id}: released but its job ended as {ended}")
    _check_holds(jobs, report)
    for job_id, ended in sorted(jobs.ended.items()):
        released = job_id in jobs.released
        if ended in {"job_failed", "job_cancelled"} and job_id in jobs.reserved and not released:
            report.problem(None, f"job {job_id}: {ended} without releasing its reserve")
