"""`rcc bench http`: POST /jobs over real HTTP against `rcc serve`, next to the direct call.

For each client count (64 and 256 by default) two timed phases run against one database:

- direct call: `execute(CreateJob)` through the bus, in this process (what the ledger
  benchmark measures, with its `drive` loop);
- HTTP: POST /jobs with a user's bearer token, over keep-alive connections (aiohttp),
  to a real `rcc serve` (portal, projectors and adapter in one process), while a mixer
  grants credits through the admin API (PATCH /admin/users/{id}) and fails acknowledged
  jobs with the adapter's command (MarkJob failed: JobFailed and CreditsReleased).

The difference between the two rows is the HTTP layer's cost: routing, auth (a token
lookup per request), JSON in and out, the ASGI server, and one process doing it all.

By default the bench starts `rcc serve` itself on a fresh database (`rcc_bench_http`,
dropped and recreated, next to DATABASE_URL's or the embedded one), with the per-user
open-job limit lifted so a steady stream of jobs is not refused; `--url` targets a
service already running on DATABASE_URL's database instead (nothing is dropped then).

Afterwards nothing may be lost: every 201 has its job_created event, `rcc audit verify`
passes, every wallet balance in the read model equals audit's recomputation from the
events, and (on the bench's own server) every bench wallet holds exactly its funding
plus acknowledged grants, minus acknowledged jobs, plus acknowledged releases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from projections.registry import ALL
from rcc.audit import AuditReport, verify
from rcc.bench.ledger import (
    _DATABASE_NAME,
    FUNDING_RCC,
    JOB_TYPES,
    POOL_SPARE,
    WARMUP_SECONDS,
    ServerInfo,
    Tally,
    drive,
    log,
    percentile_ms,
    recreate_database,
    register_funded,
    server_info,
)
from rcc.bench.table import aligned, machine_line, server_line
from rcc.bootstrap import database_url
from rcc.config import Settings
from rcc.follower.horizon import held_back
from rcc.projector.wait import wait_for
from rcc.service.bus import execute
from rcc.service.commands import CreateJob, MarkJob
from rcc.service.handlers import Done
from rcc.service.tokens import create_token
from rcc.store.database import connect_owner, create_pool
from rcc.store.event_store import head

P99_TARGET_MS = 50.0
P99_TARGET_CLIENTS = 64
PRD_LIMIT_MS = 500.0  # the PRD's bound for job creation
GRANT_RCC = 7  # each mixed-in grant
WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512}}}
READY_TIMEOUT_S = 120.0
CATCH_UP_TIMEOUT_S = 300.0


# --- what was acknowledged -------------------------------------------------------------


@dataclass
class Ledger:
    """Everything the service acknowledged, to check the log against afterwards."""

    jobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # job id -> (user, cost)
    granted: Counter[str] = field(default_factory=Counter)  # user -> RCC granted
    released: Counter[str] = field(default_factory=Counter)  # user -> RCC released
    failed_jobs: int = 0
    grants: int = 0
    mixer_refusals: Counter[str] = field(default_factory=Counter)
    failable: list[str] = field(default_factory=list)  # acknowledged, not yet failed

    def created(self, job_id: str, user_id: str, cost: int) -> None:
        self.jobs[job_id] = (user_id, cost)
        self.failable.append(job_id)

    def expected_balance(self, user_id: str, spent: int) -> int:
        return FUNDING_RCC + self.granted[user_id] - spent + self.released[user_id]


@dataclass(frozen=True)
class Run:
    """One timed phase: direct call or HTTP, at a client count."""

    path: str
    clients: int
    elapsed: float
    tally: Tally
    statuses: Counter[str]
    mixed: str = ""

    @property
    def ops(self) -> int:
        return len(self.tally.latencies)

    @property
    def throughput(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0


# --- the service under test --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(url: str, data_dir: Path) -> AsyncIterator[str]:
    """`rcc serve` on `url`'s database and a free port, until the block ends (SIGTERM)."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "RCC_DATA_DIR": str(data_dir),
        "COMFYUI_URLS": "",  # jobs wait queued: the bench fails them itself
        "RCC_MAX_QUEUED_JOBS_PER_USER": str(10**9),  # a steady stream, not a 429 wall
    }
    log_path = data_dir / "serve.log"
    with log_path.open("ab") as output:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "rcc.cli", "serve"),
            *("--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base, proc, log_path)
        yield base
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _wait_ready(base: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"rcc serve exited with {proc.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"rcc serve was not ready in {READY_TIMEOUT_S:g} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    """The end of the service's log (it lives in a directory removed after the run)."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- setup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    """The bench's users (funded), their bearer tokens and an admin token."""

    users: list[str]
    tokens: dict[str, str]
    admin_token: str


async def set_up(url: str, users: int) -> Cast:
    """Register and fund `users` users through the bus; one user token each (untimed)."""
    pool = await create_pool(url, min_size=1, max_size=16)
    try:
        ids = await register_funded(pool, users, f"http-{os.getpid()}")
        async with pool.acquire() as conn:
            tokens = {uid: (await create_token(conn, "user", uid, "bench"))[1] for uid in ids}
            _, admin = await create_token(conn, "admin", None, "bench")
    finally:
        await pool.close()
    return Cast(users=ids, tokens=tokens, admin_token=admin)


# --- the two paths -------------------------------------------------------------------------


async def direct_phase(
    url: str, cast: Cast, clients: int, seconds: float, ledger: Ledger, pool_cap: int
) -> Run:
    """`execute(CreateJob)` in-process: the ledger benchmark's event-sourced path."""
    size = max(2, min(clients + POOL_SPARE, pool_cap))
    pool = await create_pool(url, min_size=size, max_size=size)
    statuses: Counter[str] = Counter()

    async def op(rng: random.Random) -> str | None:
        user = rng.choice(cast.users)
        outcome = await execute(pool, CreateJob(user_id=user, job_type=rng.choice(JOB_TYPES)))
        if not isinstance(outcome, Done):
            statuses[type(outcome).__name__] += 1
            return f"{type(outcome).__name__}: {outcome}"
        ledger.jobs[str(outcome.result["job_id"])] = (user, int(outcome.result["cost_rcc"]))
        statuses["Done"] += 1
        return None

    try:
        log(f"{clients:>4} clients  direct call  {seconds:g} s")
        await drive(op, clients, min(WARMUP_SECONDS, seconds), seed=1)
        statuses.clear()
        elapsed, tally = await drive(op, clients, seconds, seed=2)
    finally:
        await pool.close()
    return Run("direct call", clients, elapsed, tally, statuses)


async def _post_job(
    http: aiohttp.ClientSession, base: str, cast: Cast, rng: random.Random, tally: Tally
) -> tuple[str, str, int] | str:
    """One POST /jobs: (job id, user, cost) on 201, else the status or error."""
    user = rng.choice(cast.users)
    body = {"type": rng.choice(JOB_TYPES), "workflow": WORKFLOW}
    headers = {"Authorization": f"Bearer {cast.tokens[user]}"}
    started = time.perf_counter()
    try:
        async with http.post(f"{base}/jobs", json=body, headers=headers) as answer:
            payload = await answer.json(content_type=None)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        tally.failed(f"{type(error).__name__}: {error}")
        return type(error).__name__
    if status != 201:
        tally.failed(f"{status}: {str(payload)[:200]}")
        return str(status)
    tally.latencies.append(time.perf_counter() - started)
    return str(payload["id"]), user, int(payload["cost_rcc"])


async def _mixer(
    http: aiohttp.ClientSession,
    base: str,
    cast: Cast,
    pool: asyncpg.Pool,
    ledger: Ledger,
    rate: float,
    stop: asyncio.Event,
) -> None:
    """Grants over the admin API and job failures by command, `rate` of each per second."""
    rng = random.Random(7)
    admin = {"Authorization": f"Bearer {cast.admin_token}"}
    while not stop.is_set():
        user = rng.choice(cast.users)
        grant = {"rcc_delta": GRANT_RCC, "reason": "bench: mixed-in grant"}
        try:
            async with http.patch(
                f"{base}/admin/users/{user}", json=grant, headers=admin
            ) as answer:
                await answer.read()
                if answer.status == 200:
                    ledger.granted[user] += GRANT_RCC
                    ledger.grants += 1
                else:
                    ledger.mixer_refusals[f"grant {answer.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            ledger.mixer_refusals[f"grant {type(error).__name__}"] += 1
        if ledger.failable:
            job_id = ledger.failable.pop(rng.randrange(len(ledger.failable)))
            failed = await execute(
                pool, MarkJob(job_id=job_id, status="failed", error="bench: injected failure")
            )
            if isinstance(failed, Done):
                owner, cost = ledger.jobs[job_id]
                ledger.released[owner] += cost
                ledger.failed_jobs += 1
            else:
                ledger.mixer_refusals[f"fail {type(failed).__name__}"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / rate)


async def http_phase(
    base: str,
    url: str,
    cast: Cast,
    clients: int,
    seconds: float,
    ledger: Ledger,
    mix_rate: float,
    rate: float | None = None,
) -> Run:
    """`clients` loops of POST /jobs for `seconds`, with the mixer running alongside:
    back to back, or paced to `rate` requests per second in all (each client sends every
    clients/rate seconds; a late answer delays that client's next send)."""
    interval = clients / rate if rate else 0.0
    connector = aiohttp.TCPConnector(limit=clients + 2, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    statuses: Counter[str] = Counter()
    pool = await create_pool(url, min_size=1, max_size=2)
    before = (ledger.grants, ledger.failed_jobs)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def client(rng: random.Random, deadline: float) -> Tally:
                tally = Tally()
                next_at = time.perf_counter() + rng.random() * interval  # spread the clients
                while time.perf_counter() < deadline:
                    if interval:
                        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                        next_at += interval
                    result = await _post_job(http, base, cast, rng, tally)
                    if isinstance(result, tuple):
                        ledger.created(*result)
                        statuses["201"] += 1
                    else:
                        statuses[result] += 1
                return tally

            async def timed(span: float, seed: int) -> tuple[float, Tally]:
                started = time.perf_counter()
                deadline = started + span
                tallies = await asyncio.gather(
                    *(client(random.Random(seed * 100_003 + i), deadline) for i in range(clients))
                )
                total = Tally()
                for tally in tallies:
                    total.merge(tally)
                return time.perf_counter() - started, total

            paced = f" at {rate:g}/s" if rate else ""
            mixing = f"(+ mixer {mix_rate:g}/s)"
            log(f"{clients:>4} clients  HTTP POST /jobs{paced}  {seconds:g} s {mixing}")
            await timed(min(WARMUP_SECONDS, seconds), seed=1)  # opens the connections
            statuses.clear()
            stop = asyncio.Event()
            mixer = asyncio.create_task(_mixer(http, base, cast, pool, ledger, mix_rate, stop))
            try:
                elapsed, tally = await timed(seconds, seed=2)
            finally:
                stop.set()
                await mixer
    finally:
        await pool.close()
    mixed = f"{ledger.grants - before[0]} grants, {ledger.failed_jobs - before[1]} failures"
    path = f"HTTP {rate:g}/s" if rate else "HTTP"  # a paced row has no direct twin
    return Run(path, clients, elapsed, tally, statuses, mixed)


# --- checking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    acknowledged: int
    missing: list[str]
    audit: AuditReport
    read_model_mismatches: list[str]
    balance_mismatches: list[str] | None  # None: not checked (--url)
    caught_up: bool

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and self.audit.ok
            and not self.read_model_mismatches
            and not self.balance_mismatches
            and self.caught_up
        )


async def check(url: str, cast: Cast, ledger: Ledger, own_server: bool) -> Checks:
    """Nothing lost, nothing doubled: the log, the audit, the read model, the balances."""
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            # A transaction open anywhere on the server (the horizon is server-wide)
            # holds committed events back from `head`: wait them out, or the check
            # below would compare read models that could not have seen them yet.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                    while True:
                        if not await held_back(conn):
                            break
                        await asyncio.sleep(0.05)
            last = await head(conn)
        log("waiting for the projections to apply the whole log")
        caught_up = await wait_for(pool, last, [p.name for p in ALL], CATCH_UP_TIMEOUT_S)
    finally:
        await pool.close()
    owner = await connect_owner(url)
    try:
        ids = list(ledger.jobs)
        found = {
            r["stream_id"].removeprefix("job-")
            for r in await owner.fetch(
                "SELECT stream_id FROM events WHERE type = 'job_created' AND stream_id = ANY($1)",
                [f"job-{i}" for i in ids],
            )
        }
        missing = [i for i in ids if i not in found]
        log("audit: recomputing every hash chain and balance")
        report = await verify(owner, progress=lambda n: log(f"audit: {n} events"))
        projected = {
            r["wallet_id"]: int(r["balance"])
            for r in await owner.fetch("SELECT wallet_id, balance FROM wallet_balances")
        }
    finally:
        await owner.close()
    read_model = [
        f"wallet {w}: read model {projected.get(w)}, events {b}"
        for w, b in report.balances.items()
        if projected.get(w) != b
    ]
    balances: list[str] | None = None
    if own_server:
        spent: Counter[str] = Counter()
        for user, cost in ledger.jobs.values():
            spent[user] += cost
        balances = [
            f"wallet {u}: expected {ledger.expected_balance(u, spent[u])}, "
            f"events {report.balances.get(u)}"
            for u in cast.users
            if report.balances.get(u) != ledger.expected_balance(u, spent[u])
        ]
    return Checks(len(ids), missing, report, read_model, balances, caught_up)


# --- the report ------------------------------------------------------------------------------

_COLUMNS = (
    ("path", "<"),
    ("clients", ">"),
    ("ops", ">"),
    ("ops/s", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("max ms", ">"),
    ("errors", ">"),
    ("HTTP/direct", ">"),
    ("mixed in", "<"),
)


def _pair(run: Run, runs: Sequence[Run]) -> Run | None:
    other = "direct call" if run.path == "HTTP" else "HTTP"
    return next((r for r in runs if (r.path, r.clients) == (other, run.clients)), None)


def _cells(run: Run, runs: Sequence[Run]) -> list[str]:
    latencies = run.tally.latencies
    direct = _pair(run, runs) if run.path == "HTTP" else None
    ratio = run.throughput / direct.throughput if direct and direct.throughput else None
    return [
        run.path,
        str(run.clients),
        str(run.ops),
        f"{run.throughput:.0f}",
        f"{percentile_ms(latencies, 0.50):.1f}",
        f"{percentile_ms(latencies, 0.99):.1f}",
        f"{max(latencies, default=math.nan) * 1000:.1f}",
        str(run.tally.errors),
        "" if ratio is None else f"{ratio:.2f}x",
        run.mixed,
    ]


def format_table(runs: Sequence[Run]) -> list[str]:
    """The result table, one row per phase, columns aligned."""
    return aligned(_COLUMNS, [_cells(run, runs) for run in runs])


def format_header(info: ServerInfo, args: argparse.Namespace, target: str) -> list[str]:
    return [
        "rcc bench http: POST /jobs over HTTP against rcc serve vs the direct call",
        machine_line(
            "client, service and PostgreSQL share it",
            f"1-min load {os.getloadavg()[0]:.2f} at the end",
        ),
        server_line(info.version, info.fsync, info.synchronous_commit),
        f"service:  {target}; {args.users} funded users, a bearer token each, "
        f"{args.seconds:g} s per phase after a {WARMUP_SECONDS:g} s warm-up",
    ]


def format_targets(runs: Sequence[Run]) -> list[str]:
    lines = [
        f"targets: HTTP p99 < {PRD_LIMIT_MS:g} ms (PRD); aim p99 < {P99_TARGET_MS:g} ms "
        f"at {P99_TARGET_CLIENTS} clients"
    ]
    for run in runs:
        if not run.path.startswith("HTTP"):
            continue
        p99 = percentile_ms(run.tally.latencies, 0.99)
        verdict = f"p99 {p99:.1f} ms: PRD {'met' if p99 < PRD_LIMIT_MS else 'MISSED'}"
        if run.clients == P99_TARGET_CLIENTS:
            verdict += f", aim {'met' if p99 < P99_TARGET_MS else 'MISSED'}"
        direct = _pair(run, runs)
        if direct is not None and direct.tally.latencies:
            added = percentile_ms(run.tally.latencies, 0.5) - percentile_ms(
                direct.tally.latencies, 0.5
            )
            verdict += f"; HTTP adds {added:.1f} ms at p50"
        lines.append(f"  {run.clients:>4} clients{run.path[4:]}: {verdict}")
    return lines


def format_checks(checks: Checks, ledger: Ledger) -> list[str]:
    audit = checks.audit
    lines = [
        f"jobs:     {checks.acknowledged} acknowledged (201 or Done), "
        f"{checks.acknowledged - len(checks.missing)} with their job_created event "
        f"{'OK' if not checks.missing else 'FAILED'}",
        f"mixed:    {ledger.grants} grants over the admin API, {ledger.failed_jobs} jobs failed "
        f"(credits released)"
        + (f"; refused: {dict(ledger.mixer_refusals)}" if ledger.mixer_refusals else ""),
        f"caught:   projections applied the whole log {'OK' if checks.caught_up else 'FAILED'}",
        f"read:     {audit.wallets} read-model balances equal the events' "
        f"{'OK' if not checks.read_model_mismatches else 'FAILED'}",
    ]
    if checks.balance_mismatches is None:
        lines.append("balances: bench wallets vs acknowledged operations: skipped (--url)")
    else:
        lines.append(
            "balances: every bench wallet = funding + grants - jobs + releases "
            f"{'OK' if not checks.balance_mismatches else 'FAILED'}"
        )
    lines.append(
        f"audit:    checked {audit.events} events in {audit.streams} streams, "
        f"{audit.wallets} wallet balances recomputed"
    )
    problems = [
        *checks.missing[:5],
        *checks.read_model_mismatches[:5],
        *(checks.balance_mismatches or [])[:5],
    ]
    lines.extend(f"  problem: {p}" for p in problems)
    if audit.ok:
        lines.append("audit OK: every hash chain and every balance holds")
    else:
        lines.append(f"audit FAILED: {len(audit.problems)} problem(s); first: {audit.problems[0]}")
    return lines


def format_errors(runs: Sequence[Run]) -> list[str]:
    lines = []
    for run in runs:
        if run.tally.first_error:
            others = {k: v for k, v in run.statuses.items() if k not in ("201", "Done")}
            lines.append(
                f"errors, {run.clients} clients {run.path}: {others}; "
                f"first: {run.tally.first_error}"
            )
    return lines


# --- the command ------------------------------------------------------------------------------


def _argument_error(args: argparse.Namespace) -> str | None:
    if args.url is None and not _DATABASE_NAME.match(args.database):
        return "--database must match rcc_bench[a-z0-9_]* (the bench drops it on every run)"
    if any(n < 1 for n in args.clients) or args.users < 1:
        return "--clients and --users must be positive"
    if args.seconds <= 0 or args.mix_rate <= 0 or (args.rate is not None and args.rate <= 0):
        return "--seconds, --mix-rate and --rate must be positive"
    return None


async def run_http_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run the phases, print the report on stdout, return the exit status: 0 when nothing
    was lost (see the module docstring), 1 otherwise, 2 for bad arguments. Speed targets
    are reported, not fatal."""
    if problem := _argument_error(args):
        print(f"rcc bench http: {problem}", file=sys.stderr)
        return 2
    server_url = database_url(settings)
    if args.url is None:
        log(f"preparing database {args.database}")
        url = await recreate_database(server_url, args.database)
    else:
        url = server_url
    owner = await connect_owner(url)
    try:
        info = await server_info(owner)
    finally:
        await owner.close()
    pool_cap = max(2, info.free_connections - 40)  # the service under test needs its own
    log(f"registering and funding {args.users} users")
    cast = await set_up(url, args.users)
    ledger = Ledger()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="rcc-bench-http-") as scratch:
        async with contextlib.AsyncExitStack() as stack:
            if args.url is None:
                base = await stack.enter_async_context(served(url, Path(scratch)))
                target = f"rcc serve (one process) on a fresh {args.database}"
            else:
                base = args.url.rstrip("/")
                target = f"{base} (its database is DATABASE_URL's)"
            for clients in args.clients:
                runs.append(await direct_phase(url, cast, clients, args.seconds, ledger, pool_cap))
                runs.append(
                    await http_phase(
                        base, url, cast, clients, args.seconds, ledger, args.mix_rate, args.rate
                    )
                )
            checks = await check(url, cast, ledger, own_server=args.url is None)
    report = [
        *format_header(info, args, target),
        "",
        *format_table(runs),
        *format_errors(runs),
        "",
        *format_targets(runs),
        "",
        *format_checks(checks, ledger),
    ]
    print("\n".join(report), flush=True)
    return 0 if checks.ok else 1
