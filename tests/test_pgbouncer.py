"""The service on the managed PostgreSQL the PRD targets: an owner with CREATEROLE but no
SUPERUSER, and the portal through Debian's PgBouncer in transaction mode
(RCC_DATABASE_POOLER=transaction), logged in there as rcc_app; the projector, the adapter
and migrations on DATABASE_DIRECT_URL, where LISTEN and session locks hold.

On the shared test server (tests/test_managed_owner.py has a cluster of its own, where
the owner creates rcc_app itself)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from rcc.config import load_settings
from rcc.store.database import PoolerRoleError, connect_owner, create_pool
from rcc.store.migrations import migrate
from tests.helpers import balance_of
from tests.managed_pg import PgBouncer, as_user
from tests.portal_helpers import IMAGE_JOB
from tests.serve_helpers import RccProcess, free_port, in_fresh_loop, rcc_env, run_rcc
from tests.test_faults import kill_9_of_the_portal_mid_load

OWNER = "rcc_owner"
SIGNUP_GRANT = 50


@dataclass(frozen=True)
class ManagedDatabase:
    direct_url: str  # the owner, straight to the server
    pooled_url: str  # rcc_app, through PgBouncer in transaction mode

    @property
    def env(self) -> dict[str, str]:
        """What the parts need besides rcc_env: DATABASE_URL is the pooler."""
        return {
            "DATABASE_URL": self.pooled_url,
            "DATABASE_DIRECT_URL": self.direct_url,
            "RCC_DATABASE_POOLER": "transaction",
        }


async def _platform_setup(server_url: str) -> None:
    """What the platform and the app role's creator (here the test server's superuser,
    who made rcc_app for the template) have done: an owner that is not a superuser, a
    member of rcc_app, and rcc_app allowed to log in (with a password off the tests)."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute("SELECT pg_advisory_lock(4243)")  # xdist workers share roles
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", OWNER):
            await conn.execute(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER CREATEROLE")
        await conn.execute(f"GRANT rcc_app TO {OWNER}")
        await conn.execute("ALTER ROLE rcc_app LOGIN")
        await conn.execute("SELECT pg_advisory_unlock(4243)")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def bouncer(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test server (after the template
    exists, so that rcc_app does)."""
    in_fresh_loop(_platform_setup(server_url))
    running = PgBouncer(server_url, ["rcc_app", OWNER], tmp_path_factory.mktemp("pgbouncer"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def managed_db(server_url: str, bouncer: PgBouncer) -> AsyncIterator[ManagedDatabase]:
    """An empty database of the owner's, migrated by the owner."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} OWNER {OWNER}")
    finally:
        await admin.close()
    direct = as_user(server_url, OWNER, name)
    owner = await connect_owner(direct)
    try:
        await migrate(owner)
    finally:
        await owner.close()
    yield ManagedDatabase(direct, bouncer.url("rcc_app", name))
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def test_transaction_pooling_needs_a_direct_url() -> None:
    with pytest.raises(SystemExit, match="DATABASE_DIRECT_URL"):
        load_settings(
            {"DATABASE_URL": "postgresql://x@pooler/db", "RCC_DATABASE_POOLER": "transaction"}
        )


async def test_the_pooled_login_must_not_be_the_owner(managed_db: ManagedDatabase) -> None:
    """SET ROLE would stick to a server session, not to the client: the pool refuses a
    pooled login that could rewrite history instead of silently running as it."""
    as_owner = managed_db.pooled_url.replace("rcc_app@", f"{OWNER}@")
    with pytest.raises(PoolerRoleError, match="rcc_app"):
        await create_pool(as_owner, min_size=1, max_size=1, pooler="transaction")


async def test_ledger_and_idempotency_through_pgbouncer(
    managed_db: ManagedDatabase, tmp_path: Path
) -> None:
    env = rcc_env(
        managed_db.pooled_url,
        tmp_path / "data",
        RCC_SIGNUP_GRANT_RCC=str(SIGNUP_GRANT),
        RCC_MAX_QUEUED_JOBS_PER_USER="100",  # unfinished jobs at creation (the queue depth)
        **managed_db.env,
    )
    token = run_rcc(env, "tokens", "create", "--role", "user", "--email", "pool@example.com")
    headers = {"authorization": f"Bearer {token.strip().splitlines()[-1]}"}
    port = free_port()
    parts = [
        RccProcess(["projector", "--poll-interval", "0.2"], env, tmp_path / "projector.log"),
        RccProcess(["adapter"], env, tmp_path / "adapter.log"),
        RccProcess(
            ["portal", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "p.log", port
        ),
    ]
    for part in parts:
        part.start()
    try:
        portal = parts[-1]
        await asyncio.to_thread(portal.wait_http, "/readyz")
        async with httpx.AsyncClient(base_url=portal.base, headers=headers, timeout=30) as http:
            jobs = await _create_and_cancel(http, created=12, cancelled=5)
            same = await _same_key_twice(http)
            listed = (await http.get("/jobs", params={"limit": 100})).json()
        owner = await connect_owner(managed_db.direct_url)
        try:
            user_id = await owner.fetchval(
                "SELECT user_id FROM user_emails WHERE email = 'pool@example.com'"
            )
            assert await balance_of(owner, user_id) == SIGNUP_GRANT - (12 - 5) - 1
            made = await owner.fetchval("SELECT count(*) FROM events WHERE type = 'job_created'")
            assert made == 12 + 1, "the repeated key made no second job"
            await _sessions_are_where_they_belong(owner)
        finally:
            await owner.close()
        statuses = {j["id"]: j["status"] for j in listed["items"]}
        assert {statuses[j] for j in jobs[:5]} == {"cancelled"}
        assert same in statuses
        assert all(part.alive() for part in parts), [p.tail() for p in parts]
    finally:
        for part in parts:
            part.stop()


async def _create_and_cancel(http: httpx.AsyncClient, *, created: int, cancelled: int) -> list[str]:
    """`created` jobs at once, then the first `cancelled` of them cancelled at once."""
    answers = await asyncio.gather(*(http.post("/jobs", json=IMAGE_JOB) for _ in range(created)))
    assert [a.status_code for a in answers] == [201] * created, [a.text for a in answers]
    jobs = [a.json()["id"] for a in answers]
    cancels = await asyncio.gather(*(http.post(f"/jobs/{j}/cancel") for j in jobs[:cancelled]))
    assert [c.status_code for c in cancels] == [200] * cancelled, [c.text for c in cancels]
    return jobs


async def _same_key_twice(http: httpx.AsyncClient) -> str:
    """Two concurrent requests with one Idempotency-Key get one job."""
    key = {"Idempotency-Key": f"once-{uuid.uuid4().hex}"}
    first, second = await asyncio.gather(
        http.post("/jobs", json=IMAGE_JOB, headers=key),
        http.post("/jobs", json=IMAGE_JOB, headers=key),
    )
    assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    replayed = {first.headers.get("idempotent-replayed"), second.headers.get("idempotent-replayed")}
    assert replayed == {"true", None}
    return str(first.json()["id"])


async def _sessions_are_where_they_belong(owner: asyncpg.Connection) -> None:
    """The portal's queries came through PgBouncer (as rcc_app, which logs in only
    there); the projector's and the adapter's LISTEN are held by direct sessions of the
    owner. The adapter holds no session lock any more (GPU pool: leases in rows), and
    it registered itself."""
    rows = await owner.fetch(
        """SELECT a.usename, a.query, l.locktype IS NOT NULL AS advisory
             FROM pg_stat_activity a
             LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
            WHERE a.datname = current_database()"""
    )
    assert any(r["usename"] == "rcc_app" for r in rows), rows
    listening = [r["usename"] for r in rows if r["query"].startswith("LISTEN")]
    assert len(listening) >= 2 and set(listening) == {OWNER}, rows
    assert {r["usename"] for r in rows if r["advisory"]} <= {OWNER}, rows
    assert await owner.fetchval("SELECT count(*) FROM adapter_instances") >= 1


@pytest.mark.xdist_group("faults")  # heavy, like tests/test_faults.py
async def test_kill_9_of_the_portal_mid_load_through_pgbouncer(
    managed_db: ManagedDatabase, tmp_path: Path
) -> None:
    await kill_9_of_the_portal_mid_load(managed_db.direct_url, tmp_path, **managed_db.env)
