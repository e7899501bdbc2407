"""`rcc bench ledger`: create-job throughput and latency against a plain-UPDATE baseline.

For each client count, four timed phases run in one fresh database (`rcc_bench` by
default, dropped and recreated on every run):

- baseline, many wallets: `UPDATE bench_wallets SET balance = balance - $cost WHERE id = $1
  AND balance >= $cost` on a random row (what a non-event-sourced credit system does);
- event-sourced, many wallets: `execute(CreateJob)` for a random one of as many users;
- the same two on one hot wallet, where every writer queues behind one lock.

Both paths use one pool (the service's rcc_app role, `clients + spare` connections,
all opened up front), the same random cost mix and the same client count, so the ratio
compares the two ledgers rather than the harness. The server's durability settings are
reported, never changed. Afterwards a burst of `--burst` simultaneous reserves on the
hot wallet must all finish, every acknowledged reserve must be a committed event, and
`rcc audit verify` must pass on the bench database; otherwise the command exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from rcc.audit import AuditReport, verify
from rcc.bench.table import aligned, machine_line, server_line
from rcc.bootstrap import database_url, migrate_database
from rcc.config import Settings
from rcc.domain import wallet as wallets_domain
from rcc.domain.events import Event, TopupGranted, user_stream
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.service.bus import execute
from rcc.service.commands import CreateJob, GrantCredits, RegisterUser
from rcc.service.handlers import Done
from rcc.store.database import APP_ROLE, connect_owner, create_pool
from rcc.store.unit_of_work import UnitOfWork

# Far more than any run can spend, so no phase is ever refused for lack of credits.
FUNDING_RCC = 10**9
# Connections beyond the client count, so a client never waits for the pool.
POOL_SPARE = 4
# Concurrency of the untimed setup (registering and funding the wallets).
SETUP_CONCURRENCY = 16
# Untimed calls per phase before measuring: at least this long (prepares statements on
# every connection) and until the phase has made WARMUP_CALLS_PER_WALLET calls per
# wallet of its target, so that both sides measure wallets whose rows are in the buffer
# cache, as in a service that has been up (at --lots 1000 the event-sourced side's
# setup leaves the lots' pages cold, and 0.3 s touched a third of the wallets), for at
# most WARMUP_LIMIT_SECONDS.
WARMUP_SECONDS = 0.3
WARMUP_CALLS_PER_WALLET = 3
WARMUP_LIMIT_SECONDS = 20.0
# The aims from the issue.
RATIO_TARGET = 0.5
P99_TARGET_MS = 50.0
P99_TARGET_CLIENTS = 64
# Only databases with this prefix are ever dropped: the bench must not eat a real ledger.
_DATABASE_NAME = re.compile(r"^rcc_bench[a-z0-9_]{0,54}$")

JOB_TYPES = tuple(sorted(JOB_PRICES_RCC))
BASELINE_SQL = "UPDATE bench_wallets SET balance = balance - $2 WHERE id = $1 AND balance >= $2"
HOT = "hot wallet"

Op = Callable[[random.Random], Awaitable[str | None]]
"""One benchmarked call: None when it took effect, otherwise why it did not."""


def log(message: str) -> None:
    """Progress on stderr, one line per phase, so stdout stays the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- measuring ---------------------------------------------------------------------


@dataclass
class Tally:
    """What one client (or a whole phase, once merged) observed."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful calls only
    errors: int = 0
    first_error: str | None = None

    def failed(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why

    def merge(self, other: Tally) -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error


async def timed_call(op: Op, rng: random.Random, tally: Tally) -> None:
    """One call of `op`: its latency if it took effect, otherwise why not."""
    started = time.perf_counter()
    try:
        refused = await op(rng)
    except Exception as error:  # a benchmark reports failures, it does not stop on them
        tally.failed(f"{type(error).__name__}: {error}")
        return
    if refused is None:
        tally.latencies.append(time.perf_counter() - started)
    else:
        tally.failed(refused)


async def _client(op: Op, rng: random.Random, deadline: float) -> Tally:
    """Call `op` back to back until the deadline."""
    tally = Tally()
    while time.perf_counter() < deadline:
        await timed_call(op, rng, tally)
    return tally


async def drive(op: Op, clients: int, seconds: float, seed: int = 0) -> tuple[float, Tally]:
    """Run `clients` concurrent loops of `op` for `seconds`; return wall time and the tally.

    The wall time runs until the last client's last call returned, so throughput is
    never flattered by calls still in flight at the deadline.
    """
    started = time.perf_counter()
    deadline = started + seconds
    tallies = await asyncio.gather(
        *(_client(op, random.Random(seed * 100_003 + i), deadline) for i in range(clients))
    )
    elapsed = time.perf_counter() - started
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return elapsed, total


def percentile_ms(latencies: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of latencies in seconds, in milliseconds."""
    if not latencies:
        return math.nan
    ordered = sorted(latencies)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1] * 1000


@dataclass(frozen=True)
class Run:
    """One timed phase: a path (baseline or event-sourced) on a target, at a client count."""

    path: str
    target: str
    clients: int
    elapsed: float
    tally: Tally

    @property
    def ops(self) -> int:
        return len(self.tally.latencies)

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0


# --- the two ledgers ---------------------------------------------------------------


def bench_workflow(size: int) -> dict[str, object]:
    """A one-node prompt of about `size` bytes of JSON (none for 0): every job sends the
    same one, so it is hashed on every call and stored once."""
    if size <= 0:
        return {}
    return {"1": {"class_type": "EmptyImage", "inputs": {"text": "x" * size}}}


def event_sourced_op(
    pool: asyncpg.Pool, user_ids: Sequence[str], workflow: dict[str, object]
) -> Op:
    """A create-job command through the real bus: reserve the cost and create the job."""

    async def op(rng: random.Random) -> str | None:
        cmd = CreateJob(
            user_id=rng.choice(user_ids), job_type=rng.choice(JOB_TYPES), workflow=workflow
        )
        outcome = await execute(pool, cmd)
        return None if isinstance(outcome, Done) else f"{type(outcome).__name__}: {outcome}"

    return op


def baseline_op(pool: asyncpg.Pool, wallet_ids: Sequence[int]) -> Op:
    """The plain debit, one autocommitted statement: the balance is the only record."""

    async def op(rng: random.Random) -> str | None:
        wallet = rng.choice(wallet_ids)
        cost = JOB_PRICES_RCC[rng.choice(JOB_TYPES)]
        status = await pool.execute(BASELINE_SQL, wallet, cost)
        return None if status == "UPDATE 1" else f"baseline debit refused ({status})"

    return op


# --- the bench database --------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def recreate_database(server_url: str, name: str) -> str:
    """Drop and recreate the bench database, migrate it, and return its URL."""
    conn = await connect_owner(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server_url, name)
    await migrate_database(url)
    return url


async def drop_database(server_url: str, name: str) -> None:
    """Remove a bench database (used by tests; a normal run keeps it for inspection)."""
    conn = await connect_owner(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True)
class ServerInfo:
    """What the figures depend on: the server and its durability settings, as found."""

    version: str
    fsync: str
    synchronous_commit: str
    max_connections: int
    free_connections: int


async def server_info(owner: asyncpg.Connection) -> ServerInfo:
    """Read the server's version, durability settings and connection headroom."""
    row = await owner.fetchrow(
        """SELECT current_setting('server_version') AS version,
                  current_setting('fsync') AS fsync,
                  current_setting('synchronous_commit') AS synchronous_commit,
                  current_setting('max_connections')::int AS max_connections,
                  current_setting('max_connections')::int
                    - current_setting('superuser_reserved_connections')::int
                    - (SELECT count(*) FROM pg_stat_activity
                        WHERE backend_type = 'client backend')::int AS free_connections"""
    )
    return ServerInfo(**dict(row))


async def create_baseline_table(owner: asyncpg.Connection, wallets: int) -> None:
    """`bench_wallets`: row 0 is the hot wallet, rows 1..wallets the many, all funded."""
    await owner.execute("CREATE TABLE bench_wallets (id int PRIMARY KEY, balance bigint NOT NULL)")
    await owner.execute(
        "INSERT INTO bench_wallets SELECT g, $2 FROM generate_series(0, $1) AS g",
        wallets,
        FUNDING_RCC,
    )
    await owner.execute(f"GRANT SELECT, UPDATE ON bench_wallets TO {APP_ROLE}")
    await owner.execute("VACUUM ANALYZE bench_wallets")


async def register_funded(pool: asyncpg.Pool, count: int, prefix: str, lots: int = 1) -> list[str]:
    """Register `count` users through the bus and top each one up (in `lots` live
    lots); return their ids."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(index: int) -> str:
        async with gate:
            done = await execute(pool, RegisterUser(email=f"{prefix}-{index}@bench.example"))
            if not isinstance(done, Done):
                raise RuntimeError(f"bench setup: registering failed: {done}")
            user_id = str(done.result["user_id"])
            if lots > 1:
                await fund_in_lots(pool, user_id, lots)
                return user_id
            grant = GrantCredits(user_id=user_id, kind="topup", amount=FUNDING_RCC)
            granted = await execute(pool, grant)
            if not isinstance(granted, Done):
                raise RuntimeError(f"bench setup: funding failed: {granted}")
            return user_id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def fund_in_lots(
    pool: asyncpg.Pool, user_id: str, lots: int, each: int | None = None
) -> None:
    """Fund a wallet with `lots` top-up lots of `each` RCC (default: FUNDING_RCC in all)
    in one transaction (setup only), each expiring a day after the one before, so every
    reserve ranks all of them."""
    now = datetime.now(UTC)
    async with UnitOfWork(pool) as uow:
        found = await uow.lock_wallet_of(user_stream(user_id))
        assert found is not None
        _, stream, head = found
        state = head.as_state(wallets_domain.WalletState)
        events: list[Event] = []
        for n in range(lots):
            granted = wallets_domain.grant(
                state,
                TopupGranted,
                each or FUNDING_RCC // lots,
                now,
                lifetime=timedelta(days=365 + n),
            )
            state = wallets_domain.fold(granted, state)
            events += granted
        uow.stage(stream, head.version, events, state)
        await uow.commit()


@dataclass(frozen=True)
class Wallets:
    """The same shape on both sides: many wallets and one hot one."""

    users: list[str]
    hot_user: str
    rows: list[int]
    hot_row: int = 0


async def set_up(url: str, wallets: int, lots: int = 1) -> Wallets:
    """Fund `wallets` + 1 wallets on each side (untimed)."""
    owner = await connect_owner(url)
    try:
        await create_baseline_table(owner, wallets)
    finally:
        await owner.close()
    pool = await create_pool(url, min_size=1, max_size=SETUP_CONCURRENCY)
    try:
        users = await register_funded(pool, wallets + 1, "bench", lots)
    finally:
        await pool.close()
    # As the baseline's table: vacuumed and analysed before the clock starts, or the
    # autovacuum of what the setup wrote (a million lot rows and grant events at
    # --lots 1000) runs during the timed phases of one side only; then a checkpoint,
    # so the setup's dirty pages are not written out during the timed phases.
    log("vacuum analyze of the event-sourced side's tables, then a checkpoint (untimed)")
    owner = await connect_owner(url)
    try:
        await owner.execute("VACUUM ANALYZE events, streams, wallet_lots")
        try:
            await owner.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            log("no CHECKPOINT: the owner may not (superuser or pg_checkpoint)")
    finally:
        await owner.close()
    return Wallets(users=users[1:], hot_user=users[0], rows=list(range(1, wallets + 1)))


# --- phases --------------------------------------------------------------------------


@dataclass
class Plan:
    """How long and how wide every phase runs (from the command line)."""

    seconds: float
    wallets: int
    pool_cap: int  # connections the server can give the pool
    workflow_bytes: int = 0  # --workflow-bytes: the size of every job's workflow
    acknowledged: int = 0  # reserves the bus answered Done to, warm-ups included
    load_at_start: float = field(default_factory=lambda: os.getloadavg()[0])

    def pool_size(self, clients: int) -> int:
        return min(clients + POOL_SPARE, self.pool_cap)


async def warm_up(op: Op, clients: int, wallets: int, plan: Plan) -> Tally:
    """Untimed rounds of `op` until the warm-up's aims are met (see WARMUP_SECONDS)."""
    started = time.perf_counter()
    total = Tally()
    for round_ in itertools.count():
        _, warm = await drive(op, clients, min(WARMUP_SECONDS, plan.seconds), seed=1 + round_)
        total.merge(warm)
        calls = len(total.latencies) + total.errors
        if calls >= WARMUP_CALLS_PER_WALLET * wallets:
            break
        if time.perf_counter() - started > WARMUP_LIMIT_SECONDS:
            break
    return total


async def measure(op: Op, path: str, target: str, clients: int, plan: Plan, wallets: int) -> Run:
    """Warm up on `wallets` wallets, then time one phase."""
    log(f"{clients:>4} clients  {target:<13} {path:<13} {plan.seconds:g} s")
    warm = await warm_up(op, clients, wallets, plan)
    elapsed, tally = await drive(op, clients, plan.seconds, seed=1_000_003)
    if path == "event-sourced":
        plan.acknowledged += len(warm.latencies) + len(tally.latencies)
    return Run(path=path, target=target, clients=clients, elapsed=elapsed, tally=tally)


async def run_clients(url: str, wallets: Wallets, clients: int, plan: Plan) -> list[Run]:
    """The four phases at one client count, sharing one pool of `clients + spare`."""
    size = plan.pool_size(clients)
    pool = await create_pool(url, min_size=size, max_size=size)
    many = f"{plan.wallets} wallets"
    workflow = bench_workflow(plan.workflow_bytes)
    try:
        return [
            await measure(
                baseline_op(pool, wallets.rows), "baseline", many, clients, plan, plan.wallets
            ),
            await measure(
                event_sourced_op(pool, wallets.users, workflow),
                "event-sourced",
                many,
                clients,
                plan,
                plan.wallets,
            ),
            await measure(baseline_op(pool, [wallets.hot_row]), "baseline", HOT, clients, plan, 1),
            await measure(
                event_sourced_op(pool, [wallets.hot_user], workflow),
                "event-sourced",
                HOT,
                clients,
                plan,
                1,
            ),
        ]
    finally:
        await pool.close()


@dataclass(frozen=True)
class Burst:
    """`requested` simultaneous reserves on the hot wallet: how many finished, how fast."""

    requested: int
    done: int
    pool_size: int
    elapsed: float
    slowest: float
    first_error: str | None

    @property
    def ok(self) -> bool:
        return self.done == self.requested


async def hot_burst(url: str, user_id: str, count: int, plan: Plan) -> Burst:
    """Fire `count` reserves on one wallet at once; every one must be accepted.

    This is the retry-storm check of DESIGN.md: writers queue on the wallet's head
    lock instead of failing on a version conflict.
    """
    size = max(1, min(count, plan.pool_cap))
    log(f"burst: {count} simultaneous reserves on the hot wallet over {size} connections")
    pool = await create_pool(url, min_size=size, max_size=size)
    op = event_sourced_op(pool, [user_id], bench_workflow(plan.workflow_bytes))
    tally = Tally()
    try:
        started = time.perf_counter()
        await asyncio.gather(*(timed_call(op, random.Random(i), tally) for i in range(count)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    plan.acknowledged += len(tally.latencies)
    return Burst(
        requested=count,
        done=len(tally.latencies),
        pool_size=size,
        elapsed=elapsed,
        slowest=max(tally.latencies, default=0.0),
        first_error=tally.first_error,
    )


# --- checking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    """What must hold after the runs: audit, burst, every acknowledged reserve committed."""

    audit: AuditReport
    reserves_committed: int
    reserves_acknowledged: int

    @property
    def ok(self) -> bool:
        return self.audit.ok and self.reserves_committed == self.reserves_acknowledged


async def check_ledger(url: str, acknowledged: int) -> Checks:
    """Run the full audit on the bench database and count the committed reserves."""
    log("audit: recomputing every hash chain and balance of the bench database")
    owner = await connect_owner(url)
    try:
        report = await verify(owner, progress=lambda n: log(f"audit: {n} events"))
        committed = await owner.fetchval(
            "SELECT count(*) FROM events WHERE type = 'credits_reserved'"
        )
    finally:
        await owner.close()
    return Checks(audit=report, reserves_committed=committed, reserves_acknowledged=acknowledged)


# --- the report ----------------------------------------------------------------------

_COLUMNS = (
    ("scenario", "<"),
    ("path", "<"),
    ("clients", ">"),
    ("ops", ">"),
    ("ops/s", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("max ms", ">"),
    ("errors", ">"),
    ("ES/baseline", ">"),
)


def _ratio(run: Run, runs: Sequence[Run]) -> float | None:
    """Event-sourced throughput over the matching baseline's (None for a baseline row)."""
    if run.path != "event-sourced":
        return None
    for other in runs:
        if (other.path, other.target, other.clients) == ("baseline", run.target, run.clients):
            return run.throughput / other.throughput if other.throughput else math.nan
    return None


def _cells(run: Run, runs: Sequence[Run]) -> list[str]:
    latencies = run.tally.latencies
    ratio = _ratio(run, runs)
    return [
        run.target,
        run.path,
        str(run.clients),
        str(run.ops),
        f"{run.throughput:.0f}",
        f"{percentile_ms(latencies, 0.50):.1f}",
        f"{percentile_ms(latencies, 0.99):.1f}",
        f"{max(latencies, default=math.nan) * 1000:.1f}",
        str(run.tally.errors),
        "" if ratio is None else f"{ratio:.2f}x",
    ]


def format_table(runs: Sequence[Run]) -> list[str]:
    """The result table, one row per phase, columns aligned."""
    return aligned(_COLUMNS, [_cells(run, runs) for run in runs])


def format_header(info: ServerInfo, args: argparse.Namespace, plan: Plan) -> list[str]:
    """Machine, server and durability settings: without them the figures mean little."""
    spare = f"clients + {POOL_SPARE} (at most {plan.pool_cap})"
    return [
        "rcc bench ledger: create-job through the event store vs a plain UPDATE baseline",
        machine_line(
            "client and server share the machine",
            f"1-min load {plan.load_at_start:.2f} at the start (other work skews the figures)",
        ),
        server_line(info.version, info.fsync, info.synchronous_commit)
        + f", max_connections={info.max_connections}",
        f"database: {args.database} (fresh), {plan.wallets} wallets + 1 hot wallet per side, "
        f"{plan.seconds:g} s per phase after a warm-up of {WARMUP_SECONDS:g} s and "
        f"{WARMUP_CALLS_PER_WALLET} calls per wallet, "
        f"pool of {spare} connections as {APP_ROLE}, "
        f"workflow of {plan.workflow_bytes} bytes per job (--workflow-bytes)",
    ]


def format_targets(runs: Sequence[Run]) -> list[str]:
    """The issue's aims, met or missed, per client count and target."""
    lines = [
        f"targets: event-sourced >= {RATIO_TARGET:.2f}x baseline ops/s; "
        f"event-sourced p99 < {P99_TARGET_MS:g} ms at {P99_TARGET_CLIENTS} clients"
    ]
    for run in runs:
        ratio = _ratio(run, runs)
        if ratio is None:
            continue
        verdict = f"{ratio:.2f}x {'met' if ratio >= RATIO_TARGET else 'MISSED'}"
        if run.clients == P99_TARGET_CLIENTS:
            p99 = percentile_ms(run.tally.latencies, 0.99)
            verdict += f"; p99 {p99:.1f} ms {'met' if p99 < P99_TARGET_MS else 'MISSED'}"
        lines.append(f"  {run.clients:>4} clients, {run.target:<13} {verdict}")
    return lines


def format_checks(burst: Burst, checks: Checks) -> list[str]:
    """The correctness lines: the burst, the acknowledged reserves and the audit."""
    audit = checks.audit
    lines = [
        f"burst:    {burst.done}/{burst.requested} simultaneous reserves on the hot wallet "
        f"finished in {burst.elapsed * 1000:.0f} ms (slowest {burst.slowest * 1000:.0f} ms, "
        f"{burst.pool_size} connections) {'OK' if burst.ok else 'FAILED'}",
        f"reserves: {checks.reserves_acknowledged} acknowledged, "
        f"{checks.reserves_committed} credits_reserved events committed "
        f"{'OK' if checks.reserves_committed == checks.reserves_acknowledged else 'FAILED'}",
        f"audit:    checked {audit.events} events in {audit.streams} streams, "
        f"{audit.wallets} wallet balances recomputed",
    ]
    if burst.first_error:
        lines.append(f"          first burst failure: {burst.first_error}")
    if audit.ok:
        lines.append("audit OK: every hash chain and every balance holds")
    else:
        lines.append(f"audit FAILED: {len(audit.problems)} problem(s); first: {audit.problems[0]}")
        lines.extend(f"  also: {problem}" for problem in audit.problems[1:10])
    return lines


def format_errors(runs: Sequence[Run]) -> list[str]:
    """The first failure of every phase that had one (a clean run prints nothing)."""
    return [
        f"first error, {run.clients} clients {run.target} {run.path}: {run.tally.first_error}"
        for run in runs
        if run.tally.first_error
    ]


# --- the command ---------------------------------------------------------------------


def _argument_error(args: argparse.Namespace) -> str | None:
    if not _DATABASE_NAME.match(args.database):
        return "--database must match rcc_bench[a-z0-9_]* (the bench drops it on every run)"
    if any(n < 1 for n in args.clients) or args.wallets < 1 or args.burst < 0:
        return "--clients and --wallets must be positive, --burst not negative"
    if getattr(args, "lots", 1) < 1:
        return "--lots must be positive"
    if args.seconds <= 0:
        return "--seconds must be positive"
    return None


async def run_ledger_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run every phase, print the report on stdout, and return the exit status.

    0 when the burst finished, every acknowledged reserve is committed and the audit
    passed; 1 otherwise; 2 for bad arguments. Missed speed targets are reported, not
    fatal: they describe the machine as much as the code.
    """
    if problem := _argument_error(args):
        print(f"rcc bench ledger: {problem}", file=sys.stderr)
        return 2
    server_url = database_url(settings)
    log(f"preparing database {args.database} with {args.wallets} + 1 wallets per side")
    url = await recreate_database(server_url, args.database)
    owner = await connect_owner(url)
    try:
        info = await server_info(owner)
    finally:
        await owner.close()
    plan = Plan(
        seconds=args.seconds,
        wallets=args.wallets,
        pool_cap=max(2, info.free_connections - 4),
        workflow_bytes=args.workflow_bytes,
    )
    wallets = await set_up(url, args.wallets, args.lots)
    runs: list[Run] = []
    for clients in args.clients:
        runs.extend(await run_clients(url, wallets, clients, plan))
    burst = await hot_burst(url, wallets.hot_user, args.burst, plan)
    checks = await check_ledger(url, plan.acknowledged)
    report = [
        *format_header(info, args, plan),
        "",
        *format_table(runs),
        *format_errors(runs),
        "",
        *format_targets(runs),
        "",
        *format_checks(burst, checks),
    ]
    print("\n".join(report), flush=True)
    return 0 if checks.ok and burst.ok else 1
