"""Connections cut before, during and after COMMIT, a PostgreSQL restart and a kill -9 of
the portal, while clients keep creating and cancelling jobs and an admin adjusts
balances; then a checker proves that nothing took effect twice.

`rcc portal` and `rcc projector` reach a private PostgreSQL only through
tests/tcp_proxy.py, a process of its own that cuts connections on command: a COMMIT
dropped (it cannot have committed), a COMMIT forwarded and its reply dropped (it
committed; the service cannot know), a reply relayed and the connection cut after, and
every connection cut at random instants. Every request carries a unique marker that
lands in its events (a job's workflow, an adjustment's reason, the cancelled job id),
so the checker counts each request's effects in the log:

- keyed requests are retried with their key until acknowledged: exactly one effect;
- an acknowledged request without a key: exactly one effect;
- 503 database_unavailable ("did not commit"): no effect, ever;
- no answer, or 503 outcome_unknown: at most one effect;
- every balance equals `rcc audit verify`'s, and the read models equal a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from projections.registry import ALL
from rcc.audit import verify
from rcc.projector.replay import replay
from rcc.projector.wait import wait_for
from rcc.service.tokens import create_token
from rcc.store.database import connect_owner, create_pool
from rcc.store.event_store import head
from tests.conftest import REPO, with_database
from tests.helpers import funded_user
from tests.projection_helpers import differences, dump
from tests.test_faults import PrivatePostgres, Stack, private_postgres  # noqa: F401

FUNDING = 1_000_000
USERS = 4
KEYED_CREATORS = 4
UNKEYED_CREATORS = 2
LOAD_S = 10.0
SETTLE_S = 40.0
COMMIT_CUT_P = 0.35  # a third of all COMMITs are cut, one way or another
CUT_EVERY_S = 2.0  # and every connection is cut at random instants, this often on average

pytestmark = pytest.mark.xdist_group("faults")  # heavy: keep them on one worker


# --- the proxy process ------------------------------------------------------------------------


@dataclass
class ProxyProcess:
    """`python -m tests.tcp_proxy` in front of PostgreSQL's socket; driven over its
    control port."""

    proc: subprocess.Popen[bytes]
    port: int
    control_port: int

    @classmethod
    def start(cls, socket_file: Path) -> ProxyProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tcp_proxy", "--upstream-unix", str(socket_file)],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        words = proc.stdout.readline().decode().split()
        assert words[:1] == ["listening"], f"the proxy did not start: {words}"
        return cls(proc, int(words[1]), int(words[2]))

    async def tell(self, command: str) -> Any:
        import json

        reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            return json.loads(await reader.readline())
        finally:
            writer.close()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def socket_file(url: str) -> Path:
    """The Unix socket file of the server behind a pgserver URL (`?host=<dir>`)."""
    directory = Path(parse_qs(urlsplit(url).query)["host"][0])
    found = [p for p in directory.glob(".s.PGSQL.*") if not p.name.endswith(".lock")]
    assert len(found) == 1, found
    return found[0]


# --- what the clients saw ----------------------------------------------------------------------

ACKED, NOT_COMMITTED, UNKNOWN, REFUSED = "acked", "not committed", "unknown", "refused"
NOT_SENT = "not sent"  # the portal's port was closed (killed): the request never left


def outcome_of(answer: httpx.Response | str | None, ok: int, *, reads_after: bool = False) -> str:
    """What an answer says about its command's effect. POST /jobs answers from the
    command's result alone, so its 503 database_unavailable means "did not commit"; a
    cancel and an admin PATCH read the new state after their command, and that read
    can meet the outage after the command committed."""
    if answer is None:
        return UNKNOWN  # sent, no answer: the portal died or the connection broke
    if isinstance(answer, str):
        return answer
    if answer.status_code == ok:
        return ACKED
    if answer.status_code == 503:
        error = answer.json().get("error")
        assert error in {"database_unavailable", "outcome_unknown"}, answer.text
        certain = error == "database_unavailable" and not reads_after
        return NOT_COMMITTED if certain else UNKNOWN
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text}"
    return REFUSED


@dataclass
class Seen:
    """Every request's marker and the outcome its client saw (the last, for keyed ones)."""

    creates: dict[str, str] = field(default_factory=dict)  # marker -> outcome
    keyed: set[str] = field(default_factory=set)  # markers sent under a key (= the marker)
    owner: dict[str, str] = field(default_factory=dict)  # create marker -> user
    jobs: dict[str, str] = field(default_factory=dict)  # acknowledged job id -> user
    cancels: dict[str, str] = field(default_factory=dict)  # job id -> outcome
    keyed_cancels: dict[str, str] = field(default_factory=dict)  # job id -> its key
    adjusts: dict[str, str] = field(default_factory=dict)  # reason -> outcome
    answers: Counter[str] = field(default_factory=Counter)
    attempts: int = 0


@dataclass
class Clients:
    base: str
    tokens: dict[str, str]  # user -> bearer token
    admin: str
    seen: Seen = field(default_factory=Seen)

    async def _send(
        self, http: httpx.AsyncClient, method: str, path: str, token: str, **kwargs: Any
    ) -> httpx.Response | str | None:
        self.seen.attempts += 1
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            answer = await http.request(method, f"{self.base}{path}", headers=headers, **kwargs)
        except httpx.ConnectError:
            self.seen.answers["ConnectError"] += 1
            await asyncio.sleep(0.1)  # the portal is down (killed): wait a little
            return NOT_SENT
        except httpx.HTTPError as error:
            self.seen.answers[type(error).__name__] += 1
            return None
        code = answer.json().get("error", "") if answer.status_code >= 400 else ""
        self.seen.answers[f"{answer.status_code} {code}".strip()] += 1
        return answer

    async def create(self, http: httpx.AsyncClient, user: str, marker: str, keyed: bool) -> str:
        """POST /jobs once; the outcome (the job is remembered when acknowledged)."""
        workflow = {"1": {"class_type": "EmptyImage", "inputs": {"marker": marker}}}
        headers = {"Idempotency-Key": marker} if keyed else {}
        answer = await self._send(
            http,
            "POST",
            "/jobs",
            self.tokens[user],
            json={"type": "IMAGE_TASK", "workflow": workflow},
            headers=headers,
        )
        outcome = outcome_of(answer, 201)
        self.seen.creates[marker] = outcome
        if outcome == ACKED and isinstance(answer, httpx.Response):
            job = answer.json()["id"]
            assert self.seen.jobs.setdefault(job, user) == user
        return outcome

    async def cancel(self, http: httpx.AsyncClient, job: str, key: str | None) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        user = self.seen.jobs[job]
        answer = await self._send(
            http, "POST", f"/jobs/{job}/cancel", self.tokens[user], headers=headers
        )
        outcome = self.seen.cancels[job] = outcome_of(answer, 200, reads_after=True)
        return outcome

    async def adjust(self, http: httpx.AsyncClient, user: str, reason: str) -> str:
        body = {"rcc_delta": 1, "reason": reason}
        answer = await self._send(http, "PATCH", f"/admin/users/{user}", self.admin, json=body)
        outcome = self.seen.adjusts[reason] = outcome_of(answer, 200, reads_after=True)
        return outcome

    # The clients: each loops until `stop` is set.

    async def keyed_creator(self, http: httpx.AsyncClient, rng: random.Random, stop: Any) -> None:
        while not stop.is_set():
            marker = str(uuid.UUID(int=rng.getrandbits(128)))
            user = rng.choice(sorted(self.tokens))
            self.seen.keyed.add(marker)
            self.seen.owner[marker] = user
            # A careful client: the same key again until the answer is a 201.
            while await self.create(http, user, marker, keyed=True) != ACKED:
                if stop.is_set():
                    return
                await asyncio.sleep(0.05)

    async def unkeyed_creator(self, http: httpx.AsyncClient, rng: random.Random, stop: Any) -> None:
        while not stop.is_set():
            marker = str(uuid.UUID(int=rng.getrandbits(128)))
            user = rng.choice(sorted(self.tokens))
            self.seen.owner[marker] = user
            await self.create(http, user, marker, keyed=False)  # once: a retry is a new job
            await asyncio.sleep(0.02)

    async def canceller(self, http: httpx.AsyncClient, rng: random.Random, stop: Any) -> None:
        while not stop.is_set():
            fresh = sorted(set(self.seen.jobs) - set(self.seen.cancels))
            if not fresh:
                await asyncio.sleep(0.05)
                continue
            job = rng.choice(fresh)
            self.seen.cancels[job] = UNKNOWN  # claimed at once: no other canceller takes it
            if rng.random() < 0.5:
                key = self.seen.keyed_cancels[job] = str(uuid.uuid4())
                while await self.cancel(http, job, key) != ACKED:  # the same key again
                    if stop.is_set():
                        return
                    await asyncio.sleep(0.05)
            else:
                await self.cancel(http, job, None)
            await asyncio.sleep(0.03)

    async def adjuster(self, http: httpx.AsyncClient, rng: random.Random, stop: Any) -> None:
        while not stop.is_set():
            await self.adjust(http, rng.choice(sorted(self.tokens)), f"fault-{uuid.uuid4()}")
            await asyncio.sleep(0.1)

    async def settle(self, http: httpx.AsyncClient) -> None:
        """Retry every keyed request not yet acknowledged, until it is."""
        async with asyncio.timeout(SETTLE_S):
            for marker in sorted(self.seen.keyed):
                while self.seen.creates.get(marker) != ACKED:
                    await self.create(http, self.seen.owner[marker], marker, keyed=True)
            for job, key in sorted(self.seen.keyed_cancels.items()):
                while self.seen.cancels.get(job) != ACKED:
                    await self.cancel(http, job, key)


@contextlib.asynccontextmanager
async def load(clients: Clients) -> AsyncIterator[None]:
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=16)) as http:
        loops: list[Callable[..., Awaitable[None]]] = [
            *[clients.keyed_creator] * KEYED_CREATORS,
            *[clients.unkeyed_creator] * UNKEYED_CREATORS,
            clients.canceller,
            clients.canceller,
            clients.adjuster,
        ]
        tasks = [
            asyncio.create_task(loop(http, random.Random(i), stop)) for i, loop in enumerate(loops)
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        await clients.settle(http)


# --- the checker -----------------------------------------------------------------------------


def assert_effects(
    outcomes: dict[str, str], effects: Counter[str], what: str, keyed: set[str]
) -> None:
    """Each request's effects against its outcome; every violation listed at once."""
    allowed = {ACKED: (1,), NOT_COMMITTED: (0,), REFUSED: (0,), NOT_SENT: (0,), UNKNOWN: (0, 1)}
    wrong = [
        f"{'keyed' if marker in keyed else 'unkeyed'} {marker}: {outcome}, {effects[marker]}x"
        for marker, outcome in outcomes.items()
        if effects[marker] not in allowed[outcome]
    ]
    assert not wrong, f"{what}: {len(wrong)} wrong: {wrong[:8]}"
    strays = set(effects) - set(outcomes)
    assert not strays, f"{what}: effects no request asked for: {sorted(strays)[:3]}"


async def effects(owner: asyncpg.Connection, sql: str) -> Counter[str]:
    return Counter(r[0] for r in await owner.fetch(sql))


async def check(owner: asyncpg.Connection, seen: Seen) -> dict[str, int]:
    """Every effect against what its client saw; the audit; the read models."""
    created = await effects(
        owner,
        # New jobs keep their workflow by digest (workflow_blobs); old ones embed it.
        """SELECT coalesce(convert_from(b.body, 'UTF8')::jsonb,
                           e.data->'workflow')->'1'->'inputs'->>'marker'
             FROM events e
             LEFT JOIN workflow_blobs b
               ON b.digest = decode(nullif(e.data->>'workflow_digest', ''), 'hex')
            WHERE e.type = 'job_created'""",
    )
    cancelled = await effects(
        owner,
        "SELECT substr(stream_id, 5) FROM events WHERE type = 'job_cancelled'",
    )
    adjusted = await effects(
        owner, "SELECT data->>'note' FROM events WHERE type = 'credits_adjusted'"
    )
    assert all(seen.creates[m] == ACKED for m in seen.keyed), "every key ends acknowledged"
    assert_effects(seen.creates, created, "job creation", seen.keyed)
    assert_effects(seen.cancels, cancelled, "cancel", set(seen.keyed_cancels))
    assert_effects(seen.adjusts, adjusted, "adjustment", set())

    report = await verify(owner)
    assert report.ok, report.problems[:5]
    projected = dict(await owner.fetch("SELECT wallet_id, balance FROM wallet_balances"))
    assert {u: projected[u] for u in report.balances} == report.balances
    live = await dump(owner)
    await replay(owner, ALL)
    rebuilt = await dump(owner)
    assert live == rebuilt, differences(live, rebuilt)
    return {
        "effects": sum(created.values()) + sum(cancelled.values()) + sum(adjusted.values()),
        "events": int(await owner.fetchval("SELECT count(*) FROM events")),
    }


# --- the test --------------------------------------------------------------------------------


async def _users(pool: asyncpg.Pool) -> tuple[dict[str, str], str]:
    tokens = {}
    async with pool.acquire() as conn:
        for _ in range(USERS):
            user = await funded_user(pool, FUNDING)
            tokens[user] = (await create_token(conn, "user", user))[1]
        admin = (await create_token(conn, "admin", None, "faults"))[1]
    return tokens, admin


async def test_cuts_around_commit_restart_and_kill_9_nothing_twice(
    private_postgres: PrivatePostgres,  # noqa: F811
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    admin_conn = await asyncpg.connect(private_postgres.url)
    try:
        await admin_conn.execute("CREATE DATABASE rcc")
    finally:
        await admin_conn.close()
    direct_url = with_database(private_postgres.url, "rcc")
    proxy = ProxyProcess.start(socket_file(private_postgres.url))
    user = urlsplit(private_postgres.url).username or "postgres"
    proxied_url = f"postgresql://{user}@127.0.0.1:{proxy.port}/rcc"
    stack = Stack.start(proxied_url, tmp_path)  # they migrate the new database first
    pool: asyncpg.Pool | None = None
    try:
        await stack.portal_ready()
        pool = await create_pool(direct_url, min_size=1, max_size=4)
        tokens, admin = await _users(pool)
        async with pool.acquire() as conn:
            ready = await head(conn)  # the users are in the read models before the load
        assert await wait_for(pool, ready, [p.name for p in ALL], timeout=SETTLE_S)
        clients = Clients(stack.portal.base, tokens, admin)
        faults: Counter[str] = Counter()
        phases = {"set-up": time.monotonic() - started}
        async with load(clients):
            await proxy.tell(f"chaos {COMMIT_CUT_P} {CUT_EVERY_S}")
            await asyncio.sleep(LOAD_S * 0.3)
            await asyncio.to_thread(private_postgres.stop)
            await asyncio.sleep(0.5)  # requests fail meanwhile
            await asyncio.to_thread(private_postgres.start_again)
            faults["postgres restarts"] += 1
            await asyncio.sleep(LOAD_S * 0.3)
            await proxy.tell("calm")  # the portal starts without cuts, then they go on
            await asyncio.to_thread(stack.portal.kill9)
            faults["kill -9 of the portal"] += 1
            await asyncio.sleep(0.3)
            await stack.restart(stack.portal)
            await proxy.tell(f"chaos {COMMIT_CUT_P} {CUT_EVERY_S}")
            await asyncio.sleep(LOAD_S * 0.4)
            await proxy.tell("calm")
        cuts = await proxy.tell("stats")
        phases["load and settling"] = time.monotonic() - started - sum(phases.values())

        async with pool.acquire() as conn:
            last = await head(conn)
        assert await wait_for(pool, last, [p.name for p in ALL], timeout=SETTLE_S)
        assert stack.stop() == {"portal": 0, "projector": 0}, "both stop gracefully"
        owner = await connect_owner(direct_url)
        try:
            found = await check(owner, clients.seen)
        finally:
            await owner.close()
    finally:
        stack.stop()
        proxy.stop()
        if pool is not None:
            await pool.close()

    log = (tmp_path / "portal.log").read_text(errors="replace")
    resolved = len(re.findall(r"answered \w+, yet it committed", log))
    seen = clients.seen
    outcomes = Counter([*seen.creates.values(), *seen.cancels.values(), *seen.adjusts.values()])
    faults.update({k: v for k, v in cuts.items() if k.startswith(("cut_", "full_cuts"))})
    print(
        f"\nfaults injected: {dict(faults)}"
        f"\nproxy: {cuts.get('commits_seen', 0)} COMMITs seen, "
        f"{cuts.get('connections', 0)} connections, {cuts.get('connections_cut', 0)} cut at random"
        f"\ncommands: {len(seen.creates)} creations ({len(seen.keyed)} keyed), "
        f"{len(seen.cancels)} cancels ({len(seen.keyed_cancels)} keyed), "
        f"{len(seen.adjusts)} adjustments; {seen.attempts} HTTP attempts"
        f"\nlast outcomes: {dict(outcomes)}"
        f"\nanswers: {dict(seen.answers)}"
        f"\nlost COMMIT replies the portal proved committed: {resolved}"
        f"\neffects in the log: {found['effects']} ({found['events']} events)"
        f"\nwall time: {time.monotonic() - started:.1f} s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in phases.items())})"
    )
    assert cuts.get("cut_during_commit", 0) > 0, "COMMITs were cut in flight"
    assert resolved > 0, "a lost COMMIT reply was resolved as committed"
