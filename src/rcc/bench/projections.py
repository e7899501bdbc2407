"""`rcc bench projections`: replay speed, projection lag under write load, query times.

In a bench database of its own (`rcc_bench_projections` by default):

1. **Log.** Generates `--events` events (users, top-ups, jobs through their whole
   lifecycle, about one in ten failing and released). Generation runs inside
   PostgreSQL on several connections at once, but every event still goes through
   `rcc_append_v1`, so versions, hash chains and cached heads are what the service
   would have written. A database that already holds enough events is reused.
2. **Replay.** `rcc replay` of every projection from position 0, swap included:
   events per second.
3. **Queries** at that size: the admin dashboard, a user's first ledger page, a ledger
   page 20 pages deep, a jobs page; p50/p99 over repeated calls.
4. **Lag.** A separate `rcc projector` process follows the log while `--clients`
   writers run create-job/run/succeed lifecycles through `execute` (the ledger
   benchmark's write path) for `--seconds`. Projectors announce each committed batch
   on `rcc_projected`; a command's lag is from its commit (when `execute` returned)
   to the announcement of a checkpoint at or past its own.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import re
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from projections import queries
from projections.registry import ALL
from rcc.bootstrap import database_url, migrate_database
from rcc.config import Settings
from rcc.follower.checkpoints import PROJECTED_CHANNEL
from rcc.projector.progress import ProgressBar
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.store.database import connect_owner, create_pool
from rcc.store.event_store import Checkpoint

_DATABASE_NAME = re.compile(r"^rcc_bench[a-z0-9_]{0,54}$")
JOBS_PER_USER = 1000  # 6,003 events and 1,101 ledger lines per generated user
USERS_PER_CALL = 5  # one generator call (one transaction) per this many users
GENERATORS = 3  # concurrent generator connections
QUERY_RUNS = 200
AIMS = {"replay_events_per_s": 20_000, "lag_p99_ms": 200.0, "dashboard_p99_ms": 50.0}

# One user, its wallet and top-up, then its jobs, each created (reserve), queued,
# started and then succeeded (settled) or, one in ten, failed (released). The folded
# states written to the stream heads are the ones the domain would have written.
_GENERATE = """
CREATE FUNCTION pg_temp.rcc_bench_users(p_prefix text, p_first int, p_last int, p_jobs int)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    u int; j int; uid text; jid text; kind text; cost int; bal bigint; n bigint := 0;
    meta jsonb := '{"actor": "rcc-bench"}';
    wallet jsonb; job jsonb;
BEGIN
    FOR u IN p_first .. p_last - 1 LOOP
        uid := p_prefix || '-' || u;
        bal := p_jobs * 5;
        wallet := jsonb_build_object('wallet_id', uid, 'owner_kind', 'user', 'owner_id', uid,
                                     'balance', bal, 'opened', true, 'open_jobs', 0);
        PERFORM rcc_append_v1(
            ARRAY['user-' || uid, 'wallet-' || uid], ARRAY[0, 0]::bigint[],
            ARRAY[jsonb_build_object('user_id', uid, 'email', uid || '@bench.example',
                                     'wallet_id', uid, 'is_admin', false, 'registered', true),
                  wallet],
            ARRAY[1, 2, 2], ARRAY['user_registered', 'wallet_opened', 'topup_granted'],
            ARRAY[jsonb_build_object('user_id', uid, 'email', uid || '@bench.example',
                                     'wallet_id', uid, 'is_admin', false),
                  jsonb_build_object('wallet_id', uid, 'owner_kind', 'user', 'owner_id', uid),
                  jsonb_build_object('amount', bal, 'ref', NULL, 'pack', 'bench')],
            meta);
        n := n + 3;
        FOR j IN 1 .. p_jobs LOOP
            jid := uid || '-' || j;
            kind := CASE WHEN j % 5 = 0 THEN 'VIDEO_TASK' ELSE 'IMAGE_TASK' END;
            cost := CASE WHEN j % 5 = 0 THEN 5 ELSE 1 END;
            bal := bal - cost;
            job := jsonb_build_object('job_id', jid, 'user_id', uid, 'wallet_id', uid,
                                      'job_type', kind, 'cost_rcc', cost, 'bypass', false);
            PERFORM rcc_append_v1(
                ARRAY['wallet-' || uid, 'job-' || jid], ARRAY[-1, 0]::bigint[],
                ARRAY[wallet || jsonb_build_object('balance', bal, 'open_jobs', 1),
                      job || '{"status": "created"}'],
                ARRAY[1, 2], ARRAY['credits_reserved', 'job_created'],
                ARRAY[jsonb_build_object('job', jid, 'amount', cost),
                      job || '{"workflow": {}, "metadata": {}}'],
                meta);
            PERFORM rcc_append_v1(ARRAY['job-' || jid], ARRAY[-1]::bigint[],
                ARRAY[job || '{"status": "queued"}'], ARRAY[1], ARRAY['job_queued'],
                ARRAY[jsonb_build_object('job_id', jid)], meta);
            PERFORM rcc_append_v1(ARRAY['job-' || jid], ARRAY[-1]::bigint[],
                ARRAY[job || '{"status": "running"}'], ARRAY[1], ARRAY['job_started'],
                ARRAY[jsonb_build_object('job_id', jid, 'backend', 'bench', 'prompt_id', jid)],
                meta);
            IF j % 10 = 0 THEN
                bal := bal + cost;
                PERFORM rcc_append_v1(
                    ARRAY['job-' || jid, 'wallet-' || uid], ARRAY[-1, -1]::bigint[],
                    ARRAY[job || '{"status": "failed"}',
                          wallet || jsonb_build_object('balance', bal, 'open_jobs', 0)],
                    ARRAY[1, 2], ARRAY['job_failed', 'credits_released'],
                    ARRAY[jsonb_build_object('job_id', jid, 'error', 'bench failure'),
                          jsonb_build_object('job', jid, 'amount', cost)],
                    meta);
            ELSE
                PERFORM rcc_append_v1(
                    ARRAY['job-' || jid, 'wallet-' || uid], ARRAY[-1, -1]::bigint[],
                    ARRAY[job || '{"status": "succeeded"}',
                          wallet || jsonb_build_object('balance', bal, 'open_jobs', 0)],
                    ARRAY[1, 2], ARRAY['job_succeeded', 'job_settled'],
                    ARRAY[jsonb_build_object('job_id', jid, 'duration_ms', 1500,
                                             'output_uris', jsonb_build_array('out/' || jid)),
                          jsonb_build_object('job', jid)],
                    meta);
            END IF;
            n := n + 6;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;
"""


@dataclass
class Timings:
    """Latencies in seconds; reported in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self, label: str) -> str:
        return (
            f"{label:<36} p50 {self.quantile(0.5):8.2f} ms   p99 {self.quantile(0.99):8.2f} ms"
            f"   ({len(self.samples)} samples)"
        )


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _fresh_database(server_url: str, name: str, events: int) -> tuple[str, bool]:
    """The bench database, recreated unless it already holds `events` events."""
    url = _with_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            try:
                conn = await asyncpg.connect(url)
                try:
                    have = await conn.fetchval("SELECT count(*) FROM events")
                finally:
                    await conn.close()
            except asyncpg.PostgresError:
                have = 0
            if have >= events:
                return url, True
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await migrate_database(url)
    return url, False


async def generate(url: str, events: int) -> tuple[int, float]:
    """Append about `events` events through rcc_append_v1; return (events, seconds)."""
    users = max(1, round(events / (JOBS_PER_USER * 6 + 3)))
    return await generate_users(url, users, JOBS_PER_USER)


async def generate_users(url: str, users: int, jobs_per_user: int) -> tuple[int, float]:
    """Users and their jobs through rcc_append_v1, from GENERATORS connections at once
    (versions, hash chains and cached heads as the service makes them); returns
    (events, seconds)."""
    prefix = uuid.uuid4().hex[:8]
    chunks = [(i, min(i + USERS_PER_CALL, users)) for i in range(0, users, USERS_PER_CALL)]
    expected = users * (3 + 6 * jobs_per_user)
    bar = ProgressBar("generate")
    made = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal made
        conn = await connect_owner(url)
        try:
            await conn.execute("SET synchronous_commit = off")  # only the bench's own log
            await conn.execute(_GENERATE)
            while chunks:
                first, last = chunks.pop()
                appended = await conn.fetchval(
                    "SELECT pg_temp.rcc_bench_users($1, $2, $3, $4)",
                    prefix,
                    first,
                    last,
                    jobs_per_user,
                )
                made += appended  # after the await: the workers share `made`
                bar(made, expected)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(GENERATORS)))
    bar.finish()
    return made, time.perf_counter() - started


async def _time(run: Callable[[], Awaitable[object]], runs: int = QUERY_RUNS) -> Timings:
    timings = Timings()
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        timings.samples.append(time.perf_counter() - started)
    return timings


async def query_times(pool: asyncpg.Pool) -> dict[str, Timings]:
    """Dashboard, ledger and jobs pages on the projected log."""
    async with pool.acquire() as conn:
        busiest = await conn.fetchval(
            "SELECT user_id FROM rcc_ledger WHERE user_id IS NOT NULL LIMIT 1"
        )
        deep, depth = None, 1
        while depth < 21:
            cursor = (await queries.ledger_page(conn, busiest, cursor=deep)).next_cursor
            if cursor is None:
                break
            deep, depth = cursor, depth + 1
        return {
            "dashboard": await _time(lambda: queries.dashboard(conn)),
            "ledger page 1 (50 lines)": await _time(lambda: queries.ledger_page(conn, busiest)),
            f"ledger page {depth}": await _time(
                lambda: queries.ledger_page(conn, busiest, cursor=deep)
            ),
            "ledger page, reason filter": await _time(
                lambda: queries.ledger_page(conn, busiest, reason="JOB_RELEASE")
            ),
            "jobs page (user)": await _time(lambda: queries.jobs_page(conn, user_id=busiest)),
            "jobs page (admin, failed)": await _time(
                lambda: queries.jobs_page(conn, status="failed")
            ),
        }


async def dashboard_with_history(url: str, pool: asyncpg.Pool) -> Timings:
    """The dashboard again after two years of hourly counters for every metric.

    A generated log spans minutes, so its counters fill a few hours; a service that has
    run for years has ~17,500 hours per metric. These synthetic rows exist only in the
    bench database (a replay drops them) and show that the dashboard reads the hours of
    its windows, not the table.
    """
    owner = await connect_owner(url)
    try:
        await owner.execute(
            """INSERT INTO dashboard_hourly (metric, hour, value)
               SELECT m.metric, h, 1 + (random() * 50)::bigint
                 FROM (SELECT DISTINCT metric FROM dashboard_hourly) m,
                      generate_series(date_trunc('hour', now()) - interval '2 years',
                                      date_trunc('hour', now()) - interval '2 hours',
                                      interval '1 hour') AS h
               ON CONFLICT (metric, hour) DO NOTHING"""
        )
        await owner.execute("ANALYZE dashboard_hourly")
    finally:
        await owner.close()
    async with pool.acquire() as conn:
        return await _time(lambda: queries.dashboard(conn))


@dataclass
class LagResult:
    lags: Timings
    commands: int
    events: int
    seconds: float


async def lag_under_load(url: str, clients: int, seconds: float) -> LagResult:
    """Writers through `execute` while a separate `rcc projector` process follows."""
    env = {**os.environ, "DATABASE_URL": url}
    projector = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rcc.cli", "projector", env=env, stderr=asyncio.subprocess.PIPE
    )
    pool = await create_pool(url, min_size=clients + 2, max_size=clients + 2)
    listener = await asyncpg.connect(url)
    pending: list[tuple[int, int, float]] = []
    lags = Timings()
    seen = Checkpoint()

    def projected(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        nonlocal seen
        now = time.perf_counter()
        tx_id, position = (int(x) for x in payload.split(":"))
        seen = max(seen, Checkpoint(tx_id, position))
        while pending and (pending[0][0], pending[0][1]) <= (seen.tx_id, seen.position):
            lags.samples.append(now - heapq.heappop(pending)[2])

    try:
        assert projector.stderr is not None
        await projector.stderr.readline()  # "projector running: ..."
        users = [
            str(
                (
                    await _done(pool, c.RegisterUser(email=f"lag-{uuid.uuid4().hex}@bench.example"))
                ).result["user_id"]
            )
            for _ in range(clients * 4)
        ]
        for user in users:
            await _done(pool, c.GrantCredits(user_id=user, kind="topup", amount=10**9))
        await _until_caught_up(pool)
        await listener.add_listener(PROJECTED_CHANNEL, projected)
        lags.samples.clear()
        counts = [0, 0]  # commands, events
        deadline = time.perf_counter() + seconds

        def track(done: Done, events: int) -> None:
            counts[0] += 1
            counts[1] += events
            at = done.checkpoint
            if (at.tx_id, at.position) <= (seen.tx_id, seen.position):
                lags.samples.append(0.0)
            else:
                heapq.heappush(pending, (at.tx_id, at.position, time.perf_counter()))

        async def writer() -> None:
            rng = random.Random()
            while time.perf_counter() < deadline:
                user = rng.choice(users)
                kind = rng.choice(("IMAGE_TASK", "VIDEO_TASK"))
                created = await _done(pool, c.CreateJob(user_id=user, job_type=kind))
                track(created, 2)
                job_id = str(created.result["job_id"])
                track(await _done(pool, c.MarkJob(job_id=job_id, status="running")), 1)
                track(await _done(pool, c.MarkJob(job_id=job_id, status="succeeded")), 2)

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        await _until_caught_up(pool)
        await asyncio.sleep(0.2)  # the last announcements
        return LagResult(lags, counts[0], counts[1], elapsed)
    finally:
        await listener.close()
        await pool.close()
        if projector.returncode is None:
            projector.send_signal(signal.SIGTERM)
            await projector.wait()


async def _done(pool: asyncpg.Pool, cmd: c.Command) -> Done:
    outcome = await execute(pool, cmd)
    if not isinstance(outcome, Done):
        raise RuntimeError(f"bench command refused: {outcome}")
    return outcome


async def _until_caught_up(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(120), pool.acquire() as conn:
        while True:
            behind = await conn.fetchval(
                """SELECT count(*) FROM projection_checkpoints p
                    WHERE EXISTS (SELECT 1 FROM events e
                                   WHERE (e.tx_id, e.position) > (p.tx_id, p.position))"""
            )
            if not behind:
                return
            await asyncio.sleep(0.05)


async def run_projections_bench(settings: Settings, args: argparse.Namespace) -> int:
    """The whole benchmark; prints a report and returns 0 when it ran."""
    if not _DATABASE_NAME.match(args.database):
        print("--database must start with rcc_bench (it may be dropped)", file=sys.stderr)
        return 2
    server = database_url(settings)
    url, reused = await _fresh_database(server, args.database, args.events)
    gen_line = "reused the existing log"
    if not reused:
        made, gen_s = await generate(url, args.events)
        gen_line = f"generated {made:,} events in {gen_s:.1f}s ({made / gen_s:,.0f} events/s)"
    owner = await connect_owner(url)
    try:
        total = await owner.fetchval("SELECT count(*) FROM events")
        bar = ProgressBar("replay")
        result = await replay(owner, ALL, batch_size=5000, progress=bar)
        bar.finish()
    finally:
        await owner.close()
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        times = await query_times(pool)
        times["dashboard, 2 years of hourly rows"] = await dashboard_with_history(url, pool)
    finally:
        await pool.close()
    lag = await lag_under_load(url, args.clients, args.seconds)
    _report(total, gen_line, result.events, result.seconds, times, lag, args)
    return 0


def _report(
    total: int,
    gen_line: str,
    replayed: int,
    replay_s: float,
    times: dict[str, Timings],
    lag: LagResult,
    args: argparse.Namespace,
) -> None:
    rate = replayed / replay_s
    print(f"\nrcc bench projections: {total:,} events in the log ({gen_line})")
    print(
        f"replay (7 projections, swap included): {replayed:,} events in {replay_s:.1f}s"
        f" = {rate:,.0f} events/s   (aim >= {AIMS['replay_events_per_s']:,})"
    )
    print(f"queries at {total:,} events, {QUERY_RUNS} runs each:")
    for label, timing in times.items():
        print("  " + timing.line(label))
    print(
        f"lag under load: {args.clients} writers, {lag.commands:,} commands "
        f"({lag.events / lag.seconds:,.0f} events/s) for {lag.seconds:.1f}s, "
        f"projector in its own process"
    )
    print("  " + lag.lags.line("commit -> projected"))
    print(
        f"  max {max(lag.lags.samples, default=0) * 1000:.1f} ms;"
        f" mean {statistics.fmean(lag.lags.samples or [0]) * 1000:.1f} ms"
        f"   (aim p99 < {AIMS['lag_p99_ms']:.0f} ms; dashboard aim < "
        f"{AIMS['dashboard_p99_ms']:.0f} ms)"
    )
