"""The audit checks each stream in version order, not in commit order: a transaction
that got its xid early (it wrote elsewhere first, then waited for a stream's head lock)
commits the next version with a smaller tx_id. Found by the kill -9 fault tests, whose
coalesced job batches do exactly that; a version that never comes is still a gap."""

from __future__ import annotations

from datetime import UTC, datetime

from rcc.log_audit import Entry, LogAuditor
from rcc.store.hashing import GENESIS, chain_link

STREAM = "wallet-w1"
AT = datetime(2026, 12, 2, tzinfo=UTC)


def _stream(versions: int) -> list[Entry]:
    """Versions 1..n of one stream with their true hashes, unchained (seq None)."""
    entries, previous = [], GENESIS
    for version in range(1, versions + 1):
        data = f'{{"n": {version}}}'
        digest = chain_link(previous, STREAM, version, "note", data, "{}", AT)
        entries.append(
            Entry(version, 0, STREAM, version, "note", data, "{}", AT, digest, None, None)
        )
        previous = digest
    return entries


def _audit(entries: list[Entry]) -> list[str]:
    auditor = LogAuditor(check_balances=False)
    for entry in entries:
        auditor.check(entry)
    report = auditor.finish()
    assert auditor.streams[STREAM].version == max(e.version for e in entries)
    return report.problems


def test_a_later_version_met_first_in_commit_order_is_no_problem() -> None:
    v1, v2, v3, v4 = _stream(4)
    assert _audit([v1, v3, v2, v4]) == []
    assert _audit([v1, v4, v3, v2]) == []


def test_a_version_that_never_comes_is_a_gap_and_an_edit_still_shows() -> None:
    v1, _, v3 = _stream(3)
    problems = _audit([v1, v3])
    assert len(problems) == 2, problems
    assert "version gap after v1" in problems[0]
    assert "hash mismatch" in problems[1]  # v3 names v2's hash, which is gone
