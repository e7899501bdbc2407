"""Shared by the audit tests: a little history, anchors through the real `rcc`, and the
superuser's tools for rewriting the log behind the triggers."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import funded_user
from tests.projection_helpers import settle

RCC = [sys.executable, "-m", "rcc.cli"]
AUDIT_KEY = secrets.token_hex(32)


def rcc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RCC, *args], env=env, capture_output=True, text=True, timeout=300)


async def arcc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(rcc, env, *args)


def keyed(env: dict[str, str]) -> dict[str, str]:
    """The CLI environment with the anchor key."""
    return {**env, "RCC_AUDIT_KEY": AUDIT_KEY}


async def history(pool: asyncpg.Pool, users: int = 2) -> list[str]:
    """Users with grants, one job that succeeds and one that fails (a release)."""
    made = []
    for _ in range(users):
        user = await funded_user(pool, 20)
        for outcome in ("succeeded", "failed"):
            created = await execute(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
            assert isinstance(created, Done), created
            job = str(created.result["job_id"])
            for status in ("queued", "running", outcome):
                marked = await execute(pool, c.MarkJob(job_id=job, status=status))
                assert isinstance(marked, Done), marked
        made.append(user)
    return made


async def grant(pool: asyncpg.Pool, user: str, amount: int) -> None:
    done = await execute(pool, c.GrantCredits(user_id=user, kind="topup", amount=amount))
    assert isinstance(done, Done), done


async def anchor(env: dict[str, str], path: Path) -> Path:
    """`rcc audit anchor --out path`, as an operator would run it, once everything the
    test committed is commit-safe: a transaction still running in another test's
    database (the horizon is server-wide) would otherwise leave the newest events out."""
    async with asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=1) as pool:
        await settle(pool)
    made = await arcc(keyed(env), "audit", "anchor", "--out", str(path))
    assert made.returncode == 0, made.stdout + made.stderr
    return path


async def verify_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await arcc(keyed(env), "audit", "verify", *args)


def first_bad(out: subprocess.CompletedProcess[str]) -> int:
    """The position `rcc audit verify` names as the first bad one."""
    marker = "first bad position: "
    assert marker in out.stdout, out.stdout + out.stderr
    return int(out.stdout.split(marker, 1)[1].split(";", 1)[0])


async def behind_the_triggers(
    owner: asyncpg.Connection, *statements: tuple[str, tuple[object, ...]]
) -> None:
    """Run statements as the superuser with every trigger off (what an attacker does)."""
    async with owner.transaction():
        await owner.execute("SET LOCAL session_replication_role = replica")
        for sql, args in statements:
            await owner.execute(sql, *args)


RECHAIN_STREAM = """
DO $$
DECLARE r record; prev bytea := decode(repeat('00', 32), 'hex'); v bigint := 0;
BEGIN
    FOR r IN SELECT position FROM events WHERE stream_id = '{stream}' ORDER BY position LOOP
        v := v + 1;
        UPDATE events SET version = v + 1000000 WHERE position = r.position;
    END LOOP;
    UPDATE events SET version = version - 1000000 WHERE stream_id = '{stream}';
    FOR r IN SELECT * FROM events WHERE stream_id = '{stream}' ORDER BY version LOOP
        prev := rcc_event_hash_v1(prev, r.stream_id, r.version, r.type, r.data, r.metadata,
                                  r.recorded_at);
        UPDATE events SET hash = prev WHERE position = r.position;
    END LOOP;
    UPDATE streams SET version = v, last_hash = prev WHERE stream_id = '{stream}';
END
$$"""


async def rechain_stream(
    owner: asyncpg.Connection, stream: str, balance: int | None = None
) -> None:
    """Renumber a stream's versions and recompute all its hashes and its head, as an
    attacker who knows the per-stream scheme would (and the cached balance, if given)."""
    statements: list[tuple[str, tuple[object, ...]]] = [(RECHAIN_STREAM.format(stream=stream), ())]
    if balance is not None:
        statements.append(
            (
                "UPDATE streams SET state = jsonb_set(state, '{balance}', to_jsonb($2::bigint)) "
                "WHERE stream_id = $1",
                (stream, balance),
            )
        )
    await behind_the_triggers(owner, *statements)


RECHAIN_LOG = """
DO $$
DECLARE r record; prev bytea; n bigint;
BEGIN
    SELECT chain, seq INTO prev, n FROM log_chain WHERE seq = {start} - 1;
    IF NOT FOUND THEN prev := decode(repeat('00', 32), 'hex'); n := 0; END IF;
    DELETE FROM log_chain WHERE seq >= {start};
    FOR r IN SELECT position, tx_id::text::bigint AS tx, hash FROM events
              WHERE (tx_id, position) > (SELECT e.tx_id, e.position FROM events e
                                           JOIN log_chain c USING (position) WHERE c.seq = n
                                         UNION ALL SELECT '0'::xid8, 0 WHERE n = 0 LIMIT 1)
              ORDER BY tx_id, position LOOP
        n := n + 1;
        prev := sha256(prev || int8send(n) || int8send(r.position) || int8send(r.tx) || r.hash);
        INSERT INTO log_chain VALUES (n, r.position, r.tx, prev);
    END LOOP;
END
$$"""


async def rechain_log(owner: asyncpg.Connection, start: int = 1) -> None:
    """Recompute the stored log chain from event number `start` on (a full attacker)."""
    await behind_the_triggers(owner, (RECHAIN_LOG.format(start=start), ()))
