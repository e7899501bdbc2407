"""Test fixtures: a real PostgreSQL (DATABASE_URL, or the embedded one the service uses),
one freshly migrated database per test, cloned from a template for speed."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from portal.app import create_app
from projections.registry import ALL
from rcc.config import Settings, load_settings
from rcc.projector.runtime import ProjectorWorker
from rcc.store.database import connect_owner, create_pool
from rcc.store.embedded import follow_restart, restart_embedded, start_embedded
from rcc.store.migrations import SCHEMA_DIR, migrate
from tests.payment_helpers import with_stripe
from tests.stripe_double import StripeDouble

REPO = Path(__file__).resolve().parents[1]

# CI runs bounded examples so the whole suite stays well inside its time budget;
# `HYPOTHESIS_PROFILE=thorough` digs deeper on a developer's machine.
hypothesis_settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One node id per schemathesis operation (tests/test_schemathesis.py): schemathesis
    4.32 names its items `test[GET /path]`, but pytest 9.2 builds node ids from the
    original name and the callspec, so every operation of a test would share one id
    (and xdist would report them as one)."""
    for item in items:
        label = getattr(item, "operation_label", None)
        node_id = getattr(item, "_id", None)
        if label and node_id is not None and node_id.params is None:
            item._id = node_id.with_params(label)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _server_url() -> str:
    # Only the throwaway test cluster is tuned; never one named by DATABASE_URL.
    if url := os.environ.get("DATABASE_URL"):
        return url
    pgdata = Path(os.environ.get("RCC_TEST_PGDATA", REPO / ".rcc" / "test-pgdata"))
    url = start_embedded(pgdata)
    # max_connections changes only at a restart: on a fresh cluster the first worker
    # here restarts it, under a lock the other workers wait on before they connect (with
    # the default 100, two workers' pools and adapters ran out of connections).
    with (pgdata.parent / f".{pgdata.name}.tune.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if asyncio.run(_tune_for_tests(url)):
            restart_embedded(pgdata)
    follow_restart(pgdata)  # whichever worker restarted it
    return url


async def _tune_for_tests(url: str) -> bool:
    """Trade the throwaway test cluster's durability for speed, and allow the connections
    parallel workers need; True when a setting waits for a restart (max_connections)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET fsync = off")
        await conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        await conn.execute("ALTER SYSTEM SET max_connections = 300")
        await conn.execute("SELECT pg_reload_conf()")
        return bool(
            await conn.fetchval(
                "SELECT int4(setting) < 300 FROM pg_settings WHERE name = 'max_connections'"
            )
        )
    finally:
        await conn.close()


def _schema_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SCHEMA_DIR.glob("*.sql")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


async def _ensure_template(url: str) -> str:
    """A migrated template database, made once per schema version (workers share it)."""
    name = f"rcc_template_{_schema_digest()}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock(4242)")
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Built under a scratch name and renamed only once migrated, so a failed
            # migration never leaves a half-built template behind for later runs.
            scratch = f"{name}_building"
            await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{scratch}"')
            owner = await connect_owner(with_database(url, scratch))
            try:
                await migrate(owner)
            finally:
                await owner.close()
            await conn.execute(f'ALTER DATABASE "{scratch}" RENAME TO "{name}"')
        await conn.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await conn.close()
    return name


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def template_name(server_url: str) -> str:
    return asyncio.run(_ensure_template(server_url))


@pytest.fixture
async def db_url(server_url: str, template_name: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    finally:
        await conn.close()
    yield with_database(server_url, name)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The service pool (rcc_app role) on the test's database."""
    pool = await create_pool(db_url, min_size=1, max_size=60)
    yield pool
    await pool.close()


@pytest.fixture
async def owner(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the database owner's role (superuser on the embedded server)."""
    conn = await connect_owner(db_url)
    yield conn
    await conn.close()


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for running the real `rcc` command against the test database."""
    env = {**os.environ, "DATABASE_URL": db_url, "RCC_DATA_DIR": str(tmp_path / "data")}
    yield env


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Service settings for in-process portal tests (secrets are test values)."""
    return load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_SESSION_SECRET": "test-session-secret",
            "RCC_ADMIN_ALLOWLIST": "boss@example.com,@admins.example.com",
        }
    )


@pytest.fixture
async def projector(pool: asyncpg.Pool) -> AsyncIterator[ProjectorWorker]:
    """Every projection kept current in the background, as `rcc serve` does."""
    worker = ProjectorWorker(pool, ALL, poll_interval=0.2)
    task = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await asyncio.wait_for(task, timeout=10)


def portal_client(app: Any, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


@pytest.fixture
async def portal_app(settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker) -> Any:
    """The portal app on the test's database, with the projector running."""
    return create_app(settings, pool=pool)


@pytest.fixture
async def client(portal_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the portal over ASGI, in the test's own event loop."""
    async with portal_client(portal_app) as http:
        yield http


@pytest.fixture
async def double() -> AsyncIterator[StripeDouble]:
    """The Stripe API double (tests/stripe_double.py), up for the test."""
    stripe = StripeDouble()
    await stripe.start()
    yield stripe
    await stripe.close()


@pytest.fixture
def pay_settings(settings: Settings, double: StripeDouble) -> Settings:
    """The test settings with Stripe configured against the double."""
    return with_stripe(settings, double.url)
