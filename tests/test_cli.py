"""The `rcc` command line, run as a real subprocess against a real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from rcc.service.tokens import authenticate
from rcc.store.database import connect_owner
from rcc.store.migrations import discover
from tests.conftest import with_database
from tests.helpers import funded_user

RCC = [sys.executable, "-m", "rcc.cli"]


def rcc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RCC, *args], env=env, capture_output=True, text=True, timeout=120)


async def arcc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(rcc, env, *args)


async def test_tokens_create_prints_the_token_last_and_creates_the_user(
    pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    made = await arcc(cli_env, "tokens", "create", "--role", "user", "--email", "New@Example.com")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    async with pool.acquire() as conn:
        who = await authenticate(conn, secret)
        assert who is not None and who.role == "user"
        email = await conn.fetchval(
            "SELECT email FROM user_emails WHERE user_id = $1", uuid.UUID(who.user_id)
        )
        assert email == "new@example.com"
        stored = await conn.fetchval("SELECT secret_hash FROM api_tokens")
        assert secret.encode() not in bytes(stored), "only a hash is stored"

    revoked = await arcc(cli_env, "tokens", "revoke", who.token_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    async with pool.acquire() as conn:
        assert await authenticate(conn, secret) is None
    again = await arcc(cli_env, "tokens", "revoke", who.token_id)
    assert again.returncode == 1


async def test_tokens_create_user_role_needs_an_email(cli_env: dict[str, str]) -> None:
    made = await arcc(cli_env, "tokens", "create", "--role", "user")
    assert made.returncode == 2 and "--email" in made.stderr


async def test_audit_verify_passes_then_names_a_row_altered_behind_the_trigger(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str]
) -> None:
    from rcc.service import commands as c
    from rcc.service.bus import execute

    user = await funded_user(pool, 7)
    await execute(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
    ok = await arcc(cli_env, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit OK" in ok.stdout

    # A superuser can switch the trigger off; the hash chain still gives it away.
    await owner.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
    await owner.execute(
        """UPDATE events SET data = jsonb_set(data, '{amount}', '700')
            WHERE stream_id = $1 AND type = 'topup_granted'""",
        f"wallet-{user}",
    )
    await owner.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
    bad = await arcc(cli_env, "audit", "verify")
    assert bad.returncode == 1
    assert f"wallet-{user} v2" in bad.stdout and "hash mismatch" in bad.stdout
    assert "cached balance 6 but the events sum to 699" in bad.stdout


async def test_audit_verify_notices_a_deleted_event(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str]
) -> None:
    user = await funded_user(pool, 3)
    await owner.execute("SET session_replication_role = replica")  # skips triggers
    await owner.execute("DELETE FROM events WHERE stream_id = $1 AND version = 1", f"wallet-{user}")
    await owner.execute("SET session_replication_role = origin")
    bad = await arcc(cli_env, "audit", "verify")
    assert bad.returncode == 1
    assert "version gap" in bad.stdout


async def test_migrations_run_twice_and_from_two_processes_at_once(
    server_url: str, tmp_path: Path
) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    env = {
        **os.environ,
        "DATABASE_URL": with_database(server_url, name),
        "RCC_DATA_DIR": str(tmp_path),
    }
    try:
        both = await asyncio.gather(arcc(env, "migrate"), arcc(env, "migrate"))
        assert all(p.returncode == 0 for p in both), [p.stderr for p in both]
        outputs = sorted(p.stdout.strip() for p in both)
        assert outputs[0].startswith("applied [1, 2") and outputs[1] == "schema is up to date"
        third = await arcc(env, "migrate")
        assert third.stdout.strip() == "schema is up to date"
        conn = await connect_owner(env["DATABASE_URL"])
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        await conn.close()
        assert [r["version"] for r in rows] == [m.version for m in discover()]
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
