"""Faults in the middle of load: `kill -9` of the portal, of the projector and of the
adapter, and PostgreSQL stopped and started again. The parts run as real processes
(`rcc portal`, `rcc projector`, `rcc adapter`) and the load comes over real HTTP on
127.0.0.1:

- clients POST /jobs, each under its own Idempotency-Key, and retry that key until it
  is acknowledged (201), as a careful client would after a dropped connection;
- Stripe-like webhook deliveries of top-ups, each event retried until answered 200,
  and now and then an acknowledged one delivered again (Stripe does that too);
- an adapter-like failer marks acknowledged jobs failed (JobFailed, CreditsReleased).

After recovery every key and every event has been acknowledged, and then: every
acknowledged job is in the log, exactly once per key; every wallet holds exactly its
funding plus one grant per event, minus one cost per key, plus one release per failed
job (nothing lost, nothing doubled); `rcc audit verify`'s checks pass; and the read
models equal a clean replay of the log. The adapter's test runs the jobs on ComfyUI test
servers instead, and also checks that every job ended and no prompt was submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from comfy_adapter.run import prompt_id_for
from projections.registry import ALL
from rcc.audit import verify
from rcc.domain.errors import IllegalTransition
from rcc.projector.replay import replay
from rcc.projector.wait import wait_for
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.tokens import create_token
from rcc.store.database import connect_owner, create_pool
from rcc.store.embedded import start_embedded
from rcc.store.event_store import head
from tests.adapter_helpers import RUNTIME_ERROR, SLOW, wait_until
from tests.comfy_server import ComfyServer
from tests.conftest import with_database
from tests.projection_helpers import differences, dump
from tests.serve_helpers import RccProcess, free_port, rcc_env, run_rcc
from tests.stripe_payloads import WEBHOOK_SECRET, checkout_session, encode, event, new_id, sign

FUNDING = 1_000_000
# What a client of the database meets while it is away (and right after it is back).
DATABASE_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
TOPUP_CREDITS = 550  # pack M of the built-in catalog
USERS = 6
CLIENTS = 8
ACKS_BEFORE_FAULT = 60  # acknowledged jobs before the fault, and again after recovery
SETTLE_S = 60.0

pytestmark = pytest.mark.xdist_group("faults")  # heavy: keep them on one worker


# --- the processes -------------------------------------------------------------------------


@dataclass
class Stack:
    """`rcc portal` and `rcc projector` on one database, as docker-compose runs them."""

    db_url: str
    env: dict[str, str]
    portal: RccProcess
    projector: RccProcess

    @classmethod
    def start(cls, db_url: str, tmp: Path, **extra_env: str) -> Stack:
        """`extra_env` may point the parts elsewhere (tests/test_pgbouncer.py: a pooler)."""
        env = rcc_env(
            db_url,
            tmp / "data",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            RCC_MAX_QUEUED_JOBS_PER_USER=str(10**6),  # jobs pile up: no adapter runs them
            RCC_RATE_WEBHOOK_PER_MIN=str(10**6),
            **extra_env,
        )
        port = free_port()
        portal = RccProcess(
            ["portal", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "portal.log", port
        )
        projector = RccProcess(["projector", "--poll-interval", "0.2"], env, tmp / "projector.log")
        return cls(db_url, env, portal.start(), projector.start())

    async def portal_ready(self) -> None:
        await asyncio.to_thread(self.portal.wait_http, "/healthz")

    async def restart(self, part: RccProcess) -> None:
        part.start()
        if part is self.portal:
            await self.portal_ready()

    def stop(self) -> dict[str, int]:
        """SIGTERM both; their exit statuses (0: a graceful stop)."""
        codes = {}
        for name, part in (("portal", self.portal), ("projector", self.projector)):
            with contextlib.suppress(Exception):
                codes[name] = part.stop()
        return codes


# --- the load ------------------------------------------------------------------------------


async def retried(
    attempt: Callable[[], Awaitable[bool]], stop: asyncio.Event | None = None
) -> bool:
    """Call `attempt` until it succeeds (True), or until `stop` is set (False)."""
    while True:
        if await attempt():
            return True
        if stop is not None and stop.is_set():
            return False
        await asyncio.sleep(0.05)


@dataclass
class Traffic:
    """Clients, webhooks and a failer; what the service acknowledged, to check later."""

    base: str
    pool: asyncpg.Pool
    tokens: dict[str, str]  # user id -> bearer token
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> user
    jobs: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # key -> job, user, cost
    events: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # event id -> user, body
    granted: set[str] = field(default_factory=set)  # event ids answered 200
    failed: dict[str, tuple[str, int]] = field(default_factory=dict)  # job -> user, cost
    unsure: dict[str, tuple[str, int]] = field(default_factory=dict)  # failing, unanswered
    errors: Counter[str] = field(default_factory=Counter)  # what the faults looked like
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> its own
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def acknowledged(self) -> int:
        return len(self.jobs)

    async def _post_job(self, http: httpx.AsyncClient, key: str) -> bool:
        user = self.keys[key]
        headers = {"Authorization": f"Bearer {self.tokens[user]}", "Idempotency-Key": key}
        workflow = self.workflows.get(key, {"1": {"class_type": "EmptyImage"}})
        body = {"type": "IMAGE_TASK", "workflow": workflow}
        try:
            answer = await http.post(f"{self.base}/jobs", json=body, headers=headers)
        except httpx.HTTPError as error:
            self.errors[type(error).__name__] += 1
            return False
        if answer.status_code != 201:
            self.errors[f"HTTP {answer.status_code}"] += 1
            return False
        job = answer.json()
        first = self.jobs.setdefault(key, (job["id"], user, job["cost_rcc"]))
        assert first[0] == job["id"], f"key {key} answered two different jobs"
        self._progress.set()
        return True

    async def _deliver(self, http: httpx.AsyncClient, event_id: str) -> bool:
        _, raw = self.events[event_id]
        headers = {"stripe-signature": sign(raw), "content-type": "application/json"}
        try:
            answer = await http.post(f"{self.base}/webhooks/stripe", content=raw, headers=headers)
        except httpx.HTTPError as error:
            self.errors[f"webhook {type(error).__name__}"] += 1
            return False
        if answer.status_code != 200:
            self.errors[f"webhook HTTP {answer.status_code}"] += 1
            return False
        self.granted.add(event_id)
        return True

    async def _client(
        self, http: httpx.AsyncClient, rng: random.Random, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            key = str(uuid.UUID(int=rng.getrandbits(128)))
            self.keys[key] = rng.choice(list(self.tokens))
            # A dropped or failed answer: the same key again, until it is acknowledged.
            await retried(partial(self._post_job, http, key), stop)

    async def _webhooks(
        self, http: httpx.AsyncClient, rng: random.Random, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            user = rng.choice(list(self.tokens))
            session = checkout_session(user_id=user, pack="M", payment_intent=new_id("pi"))
            created = event("checkout.session.completed", session)
            self.events[created["id"]] = (user, encode(created))
            await retried(partial(self._deliver, http, created["id"]), stop)
            if self.granted and rng.random() < 0.3:  # Stripe delivers some events twice
                await self._deliver(http, rng.choice(sorted(self.granted)))
            await asyncio.sleep(0.05)

    async def _failer(self, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            candidates = [
                j for j in self.jobs.values() if j[0] not in self.failed and j[0] not in self.unsure
            ]
            if candidates:
                await self._fail(*rng.choice(candidates))
            await asyncio.sleep(0.03)

    async def _fail(self, job_id: str, user: str, cost: int) -> bool:
        """Fail a job as the adapter would; True once it is known to be failed."""
        try:
            done = await execute(self.pool, c.MarkJob(job_id=job_id, status="failed", error="x"))
        except DATABASE_AWAY as error:
            # Committed or not? Unknown until asked again (as the adapter reconciles).
            self.errors[f"fail {type(error).__name__}"] += 1
            self.unsure[job_id] = (user, cost)
            return False
        self.unsure.pop(job_id, None)
        if isinstance(done, IllegalTransition):  # an earlier, unanswered try had committed
            assert done.status == "failed", done
        else:
            assert isinstance(done, Done), done
        self.failed[job_id] = (user, cost)
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Load for the life of the block; afterwards every key and event is settled."""
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=CLIENTS + 4)
        async with httpx.AsyncClient(timeout=15, limits=limits) as http:
            tasks = [
                *(
                    asyncio.create_task(self._client(http, random.Random(i), stop))
                    for i in range(CLIENTS)
                ),
                asyncio.create_task(self._webhooks(http, random.Random(99), stop)),
                asyncio.create_task(self._failer(random.Random(98), stop)),
            ]
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            await self._settle(http)

    async def _settle(self, http: httpx.AsyncClient) -> None:
        """Retry every unacknowledged key and event until the service answers."""
        async with asyncio.timeout(SETTLE_S):
            for key in [k for k in self.keys if k not in self.jobs]:
                await retried(partial(self._post_job, http, key))
            for event_id in [e for e in self.events if e not in self.granted]:
                await retried(partial(self._deliver, http, event_id))
            for job_id, (user, cost) in list(self.unsure.items()):
                await retried(partial(self._fail, job_id, user, cost))

    async def until(self, acknowledged: int) -> None:
        """Wait (bounded) until that many jobs are acknowledged."""
        async with asyncio.timeout(SETTLE_S):
            while self.acknowledged < acknowledged:
                await self._progress.wait()
                self._progress.clear()


async def _users(pool: asyncpg.Pool) -> dict[str, str]:
    tokens = {}
    for i in range(USERS):
        made = await execute(pool, c.RegisterUser(email=f"fault-{i}@example.com"))
        assert isinstance(made, Done), made
        user = str(made.result["user_id"])
        funded = await execute(pool, c.GrantCredits(user_id=user, kind="topup", amount=FUNDING))
        assert isinstance(funded, Done), funded
        async with pool.acquire() as conn:
            tokens[user] = (await create_token(conn, "user", user))[1]
    return tokens


# --- what must hold --------------------------------------------------------------------------


async def assert_nothing_lost_nothing_doubled(traffic: Traffic, stack: Stack) -> None:
    assert traffic.keys.keys() == traffic.jobs.keys(), "every key ends acknowledged"
    assert traffic.events.keys() == traffic.granted, "every event ends acknowledged"
    pool = traffic.pool
    async with pool.acquire() as conn:
        last = await head(conn)
    names = [p.name for p in ALL]
    assert await wait_for(pool, last, names, timeout=SETTLE_S), "the projector caught up"
    # Nothing writes any more, so the read models can be compared with a replay.
    assert stack.stop() == {"portal": 0, "projector": 0}, "both stop gracefully"

    owner = await connect_owner(stack.db_url)
    try:
        created = [
            r["stream_id"].removeprefix("job-")
            for r in await owner.fetch("SELECT stream_id FROM events WHERE type = 'job_created'")
        ]
        acknowledged = [job for job, _, _ in traffic.jobs.values()]
        assert sorted(created) == sorted(acknowledged), "each key made exactly one job"

        report = await verify(owner)
        assert report.ok, report.problems[:5]
        spent, granted, released = Counter[str](), Counter[str](), Counter[str]()
        for _, user, cost in traffic.jobs.values():
            spent[user] += cost
        for event_id in traffic.granted:
            granted[traffic.events[event_id][0]] += TOPUP_CREDITS
        for user, cost in traffic.failed.values():
            released[user] += cost
        expected = {u: FUNDING + granted[u] - spent[u] + released[u] for u in traffic.tokens}
        assert {u: report.balances[u] for u in traffic.tokens} == expected

        live = await dump(owner)
        await replay(owner, ALL)
        rebuilt = await dump(owner)
        assert live == rebuilt, differences(live, rebuilt)
        projected = dict(await owner.fetch("SELECT wallet_id, balance FROM wallet_balances"))
        assert {u: projected[u] for u in traffic.tokens} == expected
    finally:
        await owner.close()


# --- the faults ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stack_under_load(
    db_url: str, tmp: Path, **extra_env: str
) -> AsyncIterator[tuple[Stack, Traffic]]:
    pool = await create_pool(db_url, min_size=1, max_size=6)
    stack = Stack.start(db_url, tmp, **extra_env)
    try:
        tokens = await _users(pool)
        await stack.portal_ready()
        traffic = Traffic(stack.portal.base, pool, tokens)
        yield stack, traffic
    finally:
        stack.stop()
        await pool.close()


async def _load_through(traffic: Traffic, fault: Callable[[], Awaitable[None]]) -> None:
    async with traffic.running():
        await traffic.until(ACKS_BEFORE_FAULT)
        await fault()
        await traffic.until(traffic.acknowledged + ACKS_BEFORE_FAULT)


async def test_kill_9_of_the_portal_mid_load(db_url: str, tmp_path: Path) -> None:
    await kill_9_of_the_portal_mid_load(db_url, tmp_path)


async def kill_9_of_the_portal_mid_load(db_url: str, tmp: Path, **extra_env: str) -> None:
    """Load, kill -9 the portal, restart it, load again: nothing lost, nothing doubled,
    and the read models equal a replay."""
    async with stack_under_load(db_url, tmp, **extra_env) as (stack, traffic):

        async def fault() -> None:
            await asyncio.to_thread(stack.portal.kill9)
            await asyncio.sleep(0.3)  # clients meet a closed port and keep their keys
            await stack.restart(stack.portal)

        await _load_through(traffic, fault)
        assert traffic.errors, "the kill was felt by the clients"
        await assert_nothing_lost_nothing_doubled(traffic, stack)


async def test_kill_9_of_the_projector_mid_load(db_url: str, tmp_path: Path) -> None:
    async with stack_under_load(db_url, tmp_path) as (stack, traffic):

        async def fault() -> None:
            await asyncio.to_thread(stack.projector.kill9)
            await asyncio.sleep(0.3)
            await stack.restart(stack.projector)

        await _load_through(traffic, fault)
        await assert_nothing_lost_nothing_doubled(traffic, stack)


# --- PostgreSQL stopped and started again, on a private server ------------------------------


@dataclass
class PrivatePostgres:
    """An embedded PostgreSQL of this test's own, so stopping it disturbs no other test."""

    pgdata: Path
    url: str

    @classmethod
    def start(cls, pgdata: Path) -> PrivatePostgres:
        return cls(pgdata, start_embedded(pgdata, stop_at_exit=False))

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH  # the binaries pgserver ships

        # pgserver runs postgres as the user `pgserver` when we are root; so must pg_ctl.
        user = "pgserver" if os.geteuid() == 0 else None
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            capture_output=True,
            text=True,
            timeout=60,
            user=user,
        )
        assert done.returncode == 0, f"pg_ctl {args}: {done.stdout}{done.stderr}"

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_again(self) -> None:
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        log = str(self.pgdata / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Any:
    # Not under tmp_path: pytest makes its base directory private (0700) again whenever
    # a worker asks for it, and the server runs as the `pgserver` user when we are root.
    home = Path(tempfile.mkdtemp(prefix="rcc-faults-pg-"))
    home.chmod(0o755)
    server = PrivatePostgres.start(home / "pg")
    try:
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


async def test_postgres_stopped_and_started_again_mid_load(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(private_postgres.url)
    try:
        await admin.execute("CREATE DATABASE rcc")
    finally:
        await admin.close()
    db_url = with_database(private_postgres.url, "rcc")
    await asyncio.to_thread(run_rcc, rcc_env(db_url, tmp_path / "data"), "migrate")
    async with stack_under_load(db_url, tmp_path) as (stack, traffic):

        async def fault() -> None:
            await asyncio.to_thread(private_postgres.stop)
            await asyncio.sleep(0.5)  # requests fail meanwhile; clients keep their keys
            await asyncio.to_thread(private_postgres.start_again)

        await _load_through(traffic, fault)
        assert stack.portal.alive() and stack.projector.alive(), "both rode it out"
        # The outage was answered as one: 503 with Retry-After, not a 500.
        assert traffic.errors["HTTP 503"] and not traffic.errors["HTTP 500"], traffic.errors
        await assert_nothing_lost_nothing_doubled(traffic, stack)


# --- kill -9 of the adapter while ComfyUI runs its jobs --------------------------------------

ADAPTER_JOBS = 80
STARTED_BEFORE_KILL = 12  # prompts ComfyUI has started when the adapter is killed


def _adapter_workflow(n: int) -> dict[str, Any]:
    """Every 8th job fails in ComfyUI (the recorded IndexError); the others take a little
    time, each with its own inputs so the test server's cache does not skip the work."""
    if n % 8 == 7:
        return RUNTIME_ERROR
    workflow = {node: {**spec, "inputs": dict(spec["inputs"])} for node, spec in SLOW.items()}
    workflow["1"]["inputs"]["color"] = n
    return workflow


async def _statuses(pool: asyncpg.Pool, jobs: list[str]) -> dict[str, str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT stream_id, state->>'status' AS status FROM streams WHERE stream_id = ANY($1)",
            [f"job-{job}" for job in jobs],
        )
    return {r["stream_id"].removeprefix("job-"): r["status"] for r in rows}


async def test_kill_9_of_the_adapter_mid_load(db_url: str, tmp_path: Path) -> None:
    async with (
        ComfyServer(node_seconds={"ImageBlur": 0.15}) as first,
        ComfyServer(node_seconds={"ImageBlur": 0.15}) as second,
        stack_under_load(db_url, tmp_path) as (stack, traffic),
    ):
        servers = (first, second)
        env = {
            **stack.env,
            "COMFYUI_URLS": f"{first.url},{second.url}",
            "RCC_COMFYUI_RETRY_BASE_S": "0.05",
            "RCC_COMFYUI_POLL_S": "1",
        }
        adapter = RccProcess(["adapter"], env, tmp_path / "adapter.log").start()
        try:
            rng = random.Random(7)
            users = sorted(traffic.tokens)
            for n in range(ADAPTER_JOBS):
                key = str(uuid.UUID(int=rng.getrandbits(128)))
                traffic.keys[key] = users[n % len(users)]
                traffic.workflows[key] = _adapter_workflow(n)
            keys = list(traffic.keys)

            async def post_all(http: httpx.AsyncClient, mine: list[str]) -> None:
                for key in mine:  # a dropped answer: the same key again until acknowledged
                    await retried(partial(traffic._post_job, http, key))

            async with httpx.AsyncClient(timeout=15) as http:
                async with asyncio.timeout(SETTLE_S):
                    posting = asyncio.gather(
                        *(post_all(http, keys[i::CLIENTS]) for i in range(CLIENTS))
                    )
                    await wait_until(
                        lambda: sum(len(s.executed) for s in servers) >= STARTED_BEFORE_KILL,
                        within=SETTLE_S,
                        what="ComfyUI to start running the jobs",
                    )
                    await asyncio.to_thread(adapter.kill9)  # prompts in flight in ComfyUI
                    acked = [job for job, _, _ in traffic.jobs.values()]
                    left = await _statuses(traffic.pool, acked)
                    in_flight = [j for j, s in left.items() if s in ("queued", "running")]
                    assert in_flight, "the kill landed while jobs were in flight"
                    await asyncio.sleep(0.3)
                    adapter.start()
                    await posting

            jobs = {job: (user, cost) for job, user, cost in traffic.jobs.values()}
            async with asyncio.timeout(SETTLE_S):  # every job ends, none stays in flight
                while True:
                    statuses = await _statuses(traffic.pool, list(jobs))
                    if all(s in ("succeeded", "failed") for s in statuses.values()):
                        break
                    assert adapter.alive(), adapter.tail()
                    await asyncio.sleep(0.1)
            assert adapter.stop() == 0, "the restarted adapter stops gracefully"
        finally:
            with contextlib.suppress(Exception):
                adapter.stop()

        assert statuses.keys() == jobs.keys()
        failing = {traffic.jobs[k][0] for k, w in traffic.workflows.items() if w is RUNTIME_ERROR}
        assert {j for j, s in statuses.items() if s == "failed"} == failing, adapter.tail()
        for job in jobs:  # once per prompt id, over both servers and both adapter lives
            assert sum(s.posts[prompt_id_for(job)] for s in servers) == 1, job
        assert sum(len(s.executed) for s in servers) == ADAPTER_JOBS, "nothing ran twice"
        async with traffic.pool.acquire() as conn:
            released = Counter(
                r["job"]
                for r in await conn.fetch(
                    "SELECT data->>'job' AS job FROM events WHERE type = 'credits_released'"
                )
            )
        assert released == Counter(failing), "one release per failed job, none twice"
        # Failed jobs gave their credits back; the shared check does the rest.
        traffic.failed = {job: jobs[job] for job in failing}
        await assert_nothing_lost_nothing_doubled(traffic, stack)
