"""Tamper evidence with signed anchors (docs/AUDIT.md), through the real `rcc` command.

Each tamper test changes the log as a superuser would, behind the immutability
triggers, and covers its tracks as far as the per-stream hash scheme allows; `rcc
audit verify --anchor` must still exit 1 and name the first bad position."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from rcc import anchors
from rcc.anchor_worker import AnchorWorker
from rcc.audit import verify
from rcc.domain.errors import DomainError
from rcc.service import commands as c
from rcc.service.handlers import HANDLERS
from rcc.store.unit_of_work import UnitOfWork
from tests.audit_helpers import (
    AUDIT_KEY,
    anchor,
    arcc,
    behind_the_triggers,
    first_bad,
    grant,
    history,
    rechain_log,
    rechain_stream,
    verify_with,
)
from tests.helpers import balance_of
from tests.projection_helpers import settle
from tests.serve_helpers import rcc_env, serve


async def test_an_unmodified_log_extends_every_anchor(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = await history(pool)
    first = await anchor(cli_env, tmp_path / "a1.json")
    await grant(pool, users[0], 5)
    second = await anchor(cli_env, tmp_path / "a2.json")
    assert anchors.read(second).events == anchors.read(first).events + 1

    ok = await verify_with(cli_env, "--anchor", str(first), "--anchor", str(second))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "anchors held: 2" in ok.stdout and "audit OK" in ok.stdout


async def test_anchor_refuses_a_short_key_and_verify_refuses_a_forged_anchor(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    short = await arcc({**cli_env, "RCC_AUDIT_KEY": "ab" * 16 + "cd"}, "audit", "anchor")
    assert short.returncode == 2 and "at least 32 random bytes" in short.stderr, short.stderr
    assert ("ab" * 16) not in short.stderr + short.stdout  # the key is never echoed

    await history(pool, users=1)
    path = await anchor(cli_env, tmp_path / "a.json")
    good = anchors.read(path)
    forged = msgspec.structs.replace(good, events=good.events + 1)
    path.write_bytes(anchors.encode(forged))
    bad = await verify_with(cli_env, "--anchor", str(path))
    assert bad.returncode == 2 and "signature does not hold" in bad.stderr, bad.stderr
    other_key = anchors.public_key_hex(anchors.signing_key("11" * 32))
    path.write_bytes(anchors.encode(good))
    wrong = await verify_with(cli_env, "--anchor", str(path), "--public-key", other_key)
    assert wrong.returncode == 2 and "signature does not hold" in wrong.stderr


async def test_tail_deletion_with_head_rollback_is_caught_by_the_anchor(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = await history(pool)
    wallet = f"wallet-{users[0]}"
    before = await balance_of(owner, users[0])
    await grant(pool, users[0], 9)  # the newest event of the log and of the wallet
    path = await anchor(cli_env, tmp_path / "a.json")
    last = await owner.fetchrow(
        "SELECT position, version FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1",
        wallet,
    )
    assert last["position"] == anchors.read(path).position
    previous = await owner.fetchval(
        "SELECT hash FROM events WHERE stream_id = $1 AND version = $2", wallet, last["version"] - 1
    )
    await behind_the_triggers(
        owner,
        ("DELETE FROM events WHERE position = $1", (last["position"],)),
        (
            """UPDATE streams SET version = $2, last_hash = $3,
                      state = jsonb_set(state, '{balance}', to_jsonb($4::bigint))
                WHERE stream_id = $1""",
            (wallet, last["version"] - 1, previous, before),
        ),
    )
    # Without the anchor, nothing inside the database betrays a clean tail deletion.
    plain = await verify_with(cli_env)
    assert plain.returncode == 0, plain.stdout
    caught = await verify_with(cli_env, "--anchor", str(path))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert first_bad(caught) == last["position"]
    assert "were removed" in caught.stdout


async def test_a_middle_deletion_is_caught_even_with_the_stream_rechained(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await history(pool)
    path = await anchor(cli_env, tmp_path / "a.json")
    victim = await owner.fetchrow(
        """SELECT position, stream_id FROM events WHERE type = 'job_queued'
            ORDER BY position LIMIT 1"""
    )
    following = await owner.fetchval(
        """SELECT position FROM events WHERE (tx_id, position) >
                  (SELECT tx_id, position FROM events WHERE position = $1)
            ORDER BY tx_id, position LIMIT 1""",
        victim["position"],
    )
    await behind_the_triggers(
        owner, ("DELETE FROM events WHERE position = $1", (victim["position"],))
    )
    await rechain_stream(owner, victim["stream_id"])  # no version gap, every hash recomputed

    caught = await verify_with(cli_env, "--anchor", str(path))
    assert caught.returncode == 1, caught.stdout
    assert first_bad(caught) == following
    assert "version gap" not in caught.stdout and "hash mismatch" not in caught.stdout


async def test_two_swapped_events_are_caught(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = await history(pool)
    await grant(pool, users[0], 3)
    await grant(pool, users[1], 4)
    path = await anchor(cli_env, tmp_path / "a.json")
    first, second = await owner.fetch(
        "SELECT position FROM events WHERE type = 'topup_granted' ORDER BY position DESC LIMIT 2"
    )
    low, high = sorted((first["position"], second["position"]))
    await behind_the_triggers(
        owner,
        ("UPDATE events SET position = -position WHERE position IN ($1, $2)", (low, high)),
        ("UPDATE events SET position = $2 WHERE position = -$1::bigint", (low, high)),
        ("UPDATE events SET position = $1 WHERE position = -$2::bigint", (low, high)),
    )
    caught = await verify_with(cli_env, "--anchor", str(path))
    assert caught.returncode == 1, caught.stdout
    assert first_bad(caught) == low


async def test_a_rewritten_event_with_every_later_hash_recomputed_is_caught(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = await history(pool)
    wallet = f"wallet-{users[0]}"
    early = await anchor(cli_env, tmp_path / "early.json")
    await grant(pool, users[1], 2)
    await grant(pool, users[0], 3)  # the event the attacker will rewrite
    await history(pool, users=1)
    late = await anchor(cli_env, tmp_path / "late.json")
    target = await owner.fetchval(
        "SELECT max(position) FROM events WHERE stream_id = $1 AND type = 'topup_granted'", wallet
    )
    await behind_the_triggers(
        owner,
        (
            "UPDATE events SET data = jsonb_set(data, '{amount}', '2000') WHERE position = $1",
            (target,),
        ),
    )
    await rechain_stream(owner, wallet, balance=await balance_of(owner, users[0]))
    plain = await verify_with(cli_env)
    assert plain.returncode == 1 and "log chain link broken" in plain.stdout, plain.stdout
    caught = await verify_with(cli_env, "--anchor", str(early), "--anchor", str(late))
    assert caught.returncode == 1
    assert first_bad(caught) == target
    assert "hash mismatch" not in caught.stdout and "cached balance" not in caught.stdout

    # An attacker who also recomputes the stored log chain leaves nothing inside the
    # database; the anchor held outside still fails, and the one before the change still
    # holds, which bounds where the change lies: after the events the early one covers.
    await rechain_log(owner)
    plain = await verify_with(cli_env)
    assert plain.returncode == 0, plain.stdout
    caught = await verify_with(cli_env, "--anchor", str(early), "--anchor", str(late))
    assert caught.returncode == 1, caught.stdout
    covered = anchors.read(early).events
    assert "anchors held: 1" in caught.stdout
    assert f"the change lies after event {covered} " in caught.stdout
    assert first_bad(caught) == await owner.fetchval(
        "SELECT position FROM log_chain WHERE seq = $1", covered + 1
    )


async def test_since_anchor_checks_only_the_new_events(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = await history(pool)
    old = await anchor(cli_env, tmp_path / "old.json")
    await history(pool, users=1)
    await grant(pool, users[0], 7)
    new = await anchor(cli_env, tmp_path / "new.json")
    added = anchors.read(new).events - anchors.read(old).events

    since = await verify_with(cli_env, "--since-anchor", str(old))
    assert since.returncode == 0, since.stdout + since.stderr
    assert f"checked {added} events" in since.stdout

    # An edit before the anchor is out of its scope (full verification's job)...
    before = await owner.fetchval("SELECT position FROM log_chain WHERE seq = 2")
    await behind_the_triggers(
        owner,
        ('UPDATE events SET metadata = \'{"actor": "x"}\' WHERE position = $1', (before,)),
    )
    assert (await verify_with(cli_env, "--since-anchor", str(old))).returncode == 0
    full = await verify_with(cli_env, "--anchor", str(old))
    assert full.returncode == 1 and first_bad(full) == before
    # ...an edit after it is caught and named.
    after = await owner.fetchval(
        "SELECT position FROM log_chain WHERE seq = $1", anchors.read(old).events + 3
    )
    await behind_the_triggers(
        owner,
        ('UPDATE events SET metadata = \'{"actor": "y"}\' WHERE position = $1', (after,)),
    )
    caught = await verify_with(cli_env, "--since-anchor", str(old))
    assert caught.returncode == 1 and first_bad(caught) == after, caught.stdout


async def files_in(directory: Path, count: int) -> None:
    """Wait (at most 10 s) until the worker has written `count` anchors."""
    async with asyncio.timeout(10):
        while len(anchors.found_in(directory)) < count:  # noqa: ASYNC110 - files, no event
            await asyncio.sleep(0.05)


async def test_the_anchor_worker_writes_signed_anchors_only_when_the_log_grows(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    users = await history(pool, users=1)
    # The whole history commit-safe first: were part of it still held back by another
    # test's transaction, the worker would rightly anchor the visible prefix, then the
    # rest once it shows, a second anchor that "nothing new" would not explain.
    await settle(pool)
    key = anchors.signing_key(AUDIT_KEY)
    worker = AnchorWorker(pool, tmp_path / "anchors", key, every_s=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await files_in(tmp_path / "anchors", 1)
        await asyncio.sleep(0.3)  # several rounds with nothing new: no new file
        assert len(anchors.found_in(tmp_path / "anchors")) == 1
        await grant(pool, users[0], 1)
        await files_in(tmp_path / "anchors", 2)
    finally:
        worker.stop()
        await task
    written = [anchors.read(p) for p in anchors.found_in(tmp_path / "anchors")]
    for made in written:
        anchors.check_signature(made, key.public_key())
        assert made.time <= datetime.now(UTC)
    report = await verify(owner, anchors=written)
    assert report.ok and report.anchors_held == 2, report.problems
    assert written[1].events == written[0].events + 1 == report.events


async def test_rcc_serve_writes_anchors_on_its_schedule_and_refuses_a_short_key(
    db_url: str, pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = tmp_path / "anchors"
    settings = {"RCC_AUDIT_ANCHOR_DIR": str(directory), "RCC_AUDIT_ANCHOR_EVERY_S": "0.2"}
    short = serve(rcc_env(db_url, tmp_path / "d1", RCC_AUDIT_KEY="ab" * 8, **settings), tmp_path)
    assert short.proc is not None
    assert await asyncio.to_thread(short.proc.wait, 60) != 0
    assert "RCC_AUDIT_KEY holds 8 bytes" in short.tail()

    service = serve(rcc_env(db_url, tmp_path / "d2", RCC_AUDIT_KEY=AUDIT_KEY, **settings), tmp_path)
    try:
        await asyncio.to_thread(service.wait_http)
        await files_in(directory, 1)
        await history(pool, users=1)
        await files_in(directory, 2)
    finally:
        assert await asyncio.to_thread(service.stop) == 0, service.tail()
    written = [anchors.read(p) for p in anchors.found_in(directory)]
    report = await verify(owner, anchors=written)
    assert report.ok and report.anchors_held == len(written) >= 2, report.problems


async def test_a_stream_whose_versions_commit_out_of_transaction_id_order_verifies(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Transaction ids are handed out at a transaction's first write, not at commit: an
    older transaction can append a wallet's next version after a younger one appended
    the version before it. Commit-safe order (tx_id, position) then meets v(n+1) before
    v(n); the audit must check the stream in its own version order, not cry tampering.
    (Found by the fault suites once workflow bodies were stored before the wallet lock.)"""
    users = await history(pool, users=1)
    wallet = f"wallet-{users[0]}"
    async with UnitOfWork(pool) as older:
        await older.conn.execute("SELECT pg_current_xact_id()")  # takes its xid now
        await grant(pool, users[0], 3)  # a younger transaction appends v(n) and commits
        late = c.GrantCredits(user_id=users[0], kind="topup", amount=4)
        outcome = await HANDLERS[type(late)](late, older)
        assert not isinstance(outcome, DomainError), outcome
        await older.commit()
    rows = await owner.fetch(
        "SELECT version FROM events WHERE stream_id = $1 ORDER BY tx_id::text::bigint, position",
        wallet,
    )
    versions = [r["version"] for r in rows]
    assert versions != sorted(versions), "the older transaction's version must come first"

    live = await verify_with(cli_env)
    assert live.returncode == 0, live.stdout + live.stderr
    path = await anchor(cli_env, tmp_path / "a.json")
    anchored = await verify_with(cli_env, "--anchor", str(path))
    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    exported = await arcc(cli_env, "audit", "export", "--out", str(tmp_path / "log.jsonl"))
    assert exported.returncode == 0, exported.stderr
    offline = await verify_with(
        cli_env, "--export", str(tmp_path / "log.jsonl"), "--anchor", str(path)
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
