"""The `rcc` command line (see CONTRACT.md for the stable names)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rcc.audit_cli import add_audit_commands
from rcc.config import Settings, load_settings
from rcc.policy_cli import add_policy_commands

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from comfy_adapter.service import running_adapter
    from portal.app import create_app
    from portal.http_server import server_config
    from portal.observability import configure_logging
    from projections.registry import ALL
    from rcc.anchor_worker import running_anchor_writer
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.projector.service import running_projector
    from rcc.service.scheduler import running_scheduler
    from rcc.signals import serve_until_stopped
    from rcc.webhooks.service import running_notifications

    configure_logging()  # first: finding or starting the database is worth a log line
    applied = await migrate_database(direct_database_url(settings))
    if applied:
        print(f"applied migrations {applied}", file=sys.stderr)
    config = server_config(create_app(settings), settings, args.host, args.port)
    # The read models and the ComfyUI adapter, kept running in-process.
    # and the scheduler of the annual plans' monthly grants.
    # and, with RCC_AUDIT_ANCHOR_DIR, the writer of signed anchors (docs/AUDIT.md).
    async with (
        running_projector(settings, ALL),
        running_adapter(settings),
        running_scheduler(settings),
        running_anchor_writer(settings),
        running_notifications(settings, _webhook_guard(settings)),  # billing states, webhooks
    ):
        await serve_until_stopped(uvicorn.Server(config))
    return 0


async def _portal(args: argparse.Namespace, settings: Settings) -> int:
    """The portal alone, plus the monthly-grant scheduler (safe in every replica: each
    month is granted under its own idempotency key). Projectors and the adapter run as
    their own processes (`rcc projector`, `rcc adapter`). Like every part it applies
    pending migrations when its pool opens; `rcc migrate` first is still the tidy way."""
    import uvicorn

    from portal.app import create_app
    from portal.http_server import server_config
    from portal.observability import configure_logging
    from rcc.service.scheduler import running_scheduler
    from rcc.signals import serve_until_stopped

    configure_logging()
    config = server_config(create_app(settings), settings, args.host, args.port)
    async with running_scheduler(settings):
        await serve_until_stopped(uvicorn.Server(config))
    return 0


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.store.migrations import MigrationError

    try:
        applied = await migrate_database(direct_database_url(settings), settings.reader_password)
    except MigrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"applied {applied}" if applied else "schema is up to date")
    return 0


async def _tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from rcc.bootstrap import open_pool
    from rcc.service.accounts import ensure_user
    from rcc.service.tokens import create_token, parse_scopes

    if args.role == "user" and not args.email:
        print("--role user needs --email", file=sys.stderr)
        return 2
    try:
        scopes = parse_scopes(args.scope or "")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if scopes and args.role != "service":
        print("--scope is for --role service only", file=sys.stderr)
        return 2
    pool = await open_pool(settings, max_size=2)
    try:
        user_id = None
        if args.email:
            found = await ensure_user(pool, args.email, settings.signup_grant_rcc, settings.lots)
            if isinstance(found, str):
                user_id = found
            else:
                print(f"error: {found.detail}", file=sys.stderr)
                return 2
        async with pool.acquire() as conn:
            token_id, secret = await create_token(conn, args.role, user_id, args.name or "", scopes)
    finally:
        await pool.close()
    print(f"token id {token_id} (role {args.role}); the token is shown once:", file=sys.stderr)
    print(secret)
    return 0


async def _tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from rcc.bootstrap import open_pool
    from rcc.service.tokens import revoke_token

    pool = await open_pool(settings, max_size=2)
    try:
        async with pool.acquire() as conn:
            revoked = await revoke_token(conn, args.token_id)
    finally:
        await pool.close()
    print("revoked" if revoked else f"no live token with id {args.token_id}")
    return 0 if revoked else 1


def _bench(suite: str) -> Command:
    """`rcc bench <suite>`: runs `rcc.bench.<suite>.run_<suite>_bench`, imported only when
    asked for (the benchmarks pull in what the service never needs)."""

    async def run(args: argparse.Namespace, settings: Settings) -> int:
        module = importlib.import_module(f"rcc.bench.{suite}")
        code: int = await getattr(module, f"run_{suite}_bench")(settings, args)
        return code

    return run


async def _adapter(args: argparse.Namespace, settings: Settings) -> int:
    from comfy_adapter.config import load_adapter_settings
    from comfy_adapter.worker import AdapterWorker
    from rcc.bootstrap import open_pool
    from rcc.queue_limits import max_running_jobs
    from rcc.signals import stop_event_on_signals

    adapter_settings = load_adapter_settings(
        settings.data_dir, max_running_per_user=max_running_jobs(settings)
    )
    pool = await open_pool(settings, max_size=8, direct=True)  # LISTEN, leader lock
    worker = AdapterWorker(pool, adapter_settings, stop_event=stop_event_on_signals())
    shown = ", ".join(adapter_settings.urls) or "none (COMFYUI_URLS is empty: jobs wait queued)"
    print(f"adapter running; COMFYUI_URLS (seeds an empty GPU pool): {shown}", file=sys.stderr)
    try:
        await worker.run()
    finally:
        await pool.close()
    print("adapter stopped", file=sys.stderr)
    return 0


def _webhook_guard(settings: Settings) -> Any:
    """The model downloads' address checks, for webhook endpoints (docs/WEBHOOKS.md)."""
    from comfy_ops.outbound_guard import DownloadAddressGuard

    return DownloadAddressGuard(allow_private=settings.webhook_allow_private)


async def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """Billing states and outbound webhooks alone (`rcc serve` runs them too)."""
    from rcc.signals import stop_event_on_signals
    from rcc.webhooks.service import run_alone

    await run_alone(settings, _webhook_guard(settings), stop_event_on_signals())
    return 0


async def _projector(args: argparse.Namespace, settings: Settings) -> int:
    from projections.registry import UnknownProjection, select
    from rcc.bootstrap import open_pool
    from rcc.projector.runtime import ProjectorWorker
    from rcc.signals import stop_event_on_signals

    try:
        projections = select(args.projection)
    except UnknownProjection as unknown:
        print(f"error: {unknown.args[0]}", file=sys.stderr)
        return 2
    pool = await open_pool(settings, max_size=3, direct=True)  # LISTEN
    worker = ProjectorWorker(
        pool,
        projections,
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
        stop_event=stop_event_on_signals(),
    )
    print(f"projector running: {', '.join(p.name for p in projections)}", file=sys.stderr)
    try:
        await worker.run()
    finally:
        await pool.close()
    print("projector stopped", file=sys.stderr)
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from projections.registry import UnknownProjection, select
    from rcc.bootstrap import direct_database_url, migrate_database
    from rcc.projector.progress import ProgressBar
    from rcc.projector.replay import ReplayBlocked, ReplayBusy, replay
    from rcc.store.database import connect_owner

    try:
        projections = select(args.projection)
    except UnknownProjection as unknown:
        print(f"error: {unknown.args[0]}", file=sys.stderr)
        return 2
    url = direct_database_url(settings)  # a session lock and search_path for the swap
    await migrate_database(url)
    conn = await connect_owner(url)  # replay creates and swaps tables: the owner's job
    bar = ProgressBar("replay")
    try:
        result = await replay(conn, projections, batch_size=args.batch_size, progress=bar)
    except (ReplayBusy, ReplayBlocked) as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    bar.finish()
    print(
        f"replayed {result.events:,} events into {', '.join(result.projections)} "
        f"in {result.seconds:.1f}s ({result.events_per_second:,.0f} events/s); swapped in at "
        f"position {result.checkpoint.position}"
    )
    return 0


async def _health(args: argparse.Namespace, settings: Settings) -> int:
    """A worker's health from what it leaves in the database (for container healthchecks):
    projector, every projection within --max-age seconds of the log; adapter, a heartbeat
    younger than --max-age seconds; neither blocked on an event type it does not know."""
    import asyncpg

    from rcc.bootstrap import direct_database_url
    from rcc.follower.checkpoints import Kind
    from rcc.follower.status import status

    try:
        conn = await asyncpg.connect(direct_database_url(settings), timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"unhealthy: database: {error}")
        return 1
    try:
        kind: Kind = "projection" if args.part == "projector" else "subscriber"
        followers = await status(conn, kind)
        blocked = [f"{s.name}: {s.blocked}" for s in followers if s.blocked]
        if blocked:
            print(f"unhealthy: {'; '.join(blocked)}")
            return 1
        if args.part == "projector":
            age = max((s.lag_seconds for s in followers), default=0.0)
            what = "oldest unprojected event"
        else:
            found = await conn.fetchval(
                "SELECT extract(epoch FROM now() - max(heartbeat_at))::float8 FROM adapter_status"
            )
            age = float("inf") if found is None else float(found)
            what = "last adapter heartbeat"
    except asyncpg.PostgresError as error:
        print(f"unhealthy: {error}")
        return 1
    finally:
        await conn.close()
    healthy = age <= args.max_age
    print(f"{'healthy' if healthy else 'unhealthy'}: {what} {age:.1f} s old (max {args.max_age:g})")
    return 0 if healthy else 1


async def _projections_status(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from rcc.bootstrap import open_pool
    from rcc.follower.status import status

    pool = await open_pool(settings, max_size=2)
    try:
        async with pool.acquire() as conn:
            found = await status(conn)
    finally:
        await pool.close()
    if args.json:
        print(msgspec.json.encode(found).decode())
        return 0
    print(
        f"{'follower':<22} {'tx_id':>10} {'position':>10} {'lag events':>11} {'lag s':>8}"
        f"  {'kind':<10}  state"
    )
    for s in found:
        print(
            f"{s.name:<22} {s.checkpoint.tx_id:>10} {s.checkpoint.position:>10} "
            f"{s.lag_events:>11} {s.lag_seconds:>8.2f}  {s.kind:<10}  {s.blocked or 'following'}"
        )
    return 0


async def _stripe_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from rcc.adapters.stripe_api import list_events, stripe_client
    from rcc.bootstrap import open_pool
    from rcc.service.stripe_inbox import reconcile

    if not settings.stripe_secret_key:
        print("error: STRIPE_SECRET_KEY is not set", file=sys.stderr)
        return 2
    async with stripe_client(settings.stripe_secret_key, settings.stripe_api_base) as client:
        listed = await list_events(client, int(args.since.timestamp()))
    pool = await open_pool(settings, max_size=4)
    try:
        report = await reconcile(pool, listed, settings.catalog, lots=settings.lots)
    finally:
        await pool.close()
    return 1 if report.failed else 0


def _since(text: str) -> datetime:
    """A date (UTC midnight) or an ISO datetime (UTC unless it says otherwise)."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcc", description="Ranch Cloud Credits")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    portal = sub.add_parser("portal", help="run the portal alone (after `rcc migrate`)")
    portal.add_argument("--host", default="127.0.0.1")
    portal.add_argument("--port", type=int, default=8000)
    portal.set_defaults(run=_portal)

    sub.add_parser("migrate", help="apply schema/ migrations").set_defaults(run=_migrate)

    tokens = sub.add_parser("tokens", help="bearer tokens").add_subparsers(
        dest="action", required=True
    )
    create = tokens.add_parser("create", help="print a new token as the last line")
    create.add_argument("--role", required=True, choices=["admin", "service", "user", "auditor"])
    create.add_argument("--email")
    create.add_argument("--name", help="a service token's name names it in the ledger")
    create.add_argument(
        "--scope", help="service scopes, comma-separated: credits:read,credits:hold,credits:usage"
    )
    create.set_defaults(run=_tokens_create)
    revoke = tokens.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.set_defaults(run=_tokens_revoke)

    add_audit_commands(sub)
    add_policy_commands(sub)  # h6: rcc policy get|set|history|seed-plans

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="suite", required=True)
    ledger = bench.add_parser("ledger", help="create-job throughput vs a plain UPDATE baseline")
    ledger.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    ledger.add_argument("--seconds", type=float, default=5.0)
    ledger.add_argument("--wallets", type=int, default=1000)
    ledger.add_argument(
        "--lots",
        type=int,
        default=1,
        help="live credit lots in every wallet (the reserve ranks them)",
    )
    ledger.add_argument(
        "--database", default="rcc_bench", help="bench database, dropped and recreated (rcc_bench*)"
    )
    ledger.add_argument(
        "--burst", type=int, default=200, help="concurrent reserves on one wallet; all must finish"
    )
    ledger.add_argument(
        "--workflow-bytes",
        type=int,
        default=0,
        help="each job carries a workflow of about this many bytes (hashed, stored once)",
    )
    ledger.set_defaults(run=_bench("ledger"))
    bench_http = bench.add_parser("http", help="POST /jobs over HTTP vs the direct call")
    bench_http.add_argument("--clients", type=int, nargs="+", default=[64, 256])
    bench_http.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    bench_http.add_argument("--users", type=int, default=1000, help="funded users with tokens")
    bench_http.add_argument(
        "--mix-rate", type=float, default=20.0, help="grants and job failures per second, each"
    )
    bench_http.add_argument(
        "--url", help="a running service on DATABASE_URL's database (default: start rcc serve)"
    )
    bench_http.add_argument(
        "--rate", type=float, help="pace the HTTP clients to this many requests/s in all"
    )
    bench_http.add_argument(
        "--database", default="rcc_bench_http", help="bench database (rcc_bench*), recreated"
    )
    bench_http.set_defaults(run=_bench("http"))
    bench_proj = bench.add_parser("projections", help="replay speed, projection lag, query times")
    bench_proj.add_argument("--events", type=int, default=1_000_000, help="size of the log")
    bench_proj.add_argument("--clients", type=int, default=16, help="writers during the lag run")
    bench_proj.add_argument("--seconds", type=float, default=10.0, help="length of the lag run")
    bench_proj.add_argument(
        "--database",
        default="rcc_bench_projections",
        help="bench database (rcc_bench*), recreated unless it already holds --events events",
    )
    bench_proj.set_defaults(run=_bench("projections"))
    bench_adapter = bench.add_parser("adapter", help="ComfyUI adapter dispatch overhead per job")
    bench_adapter.add_argument("--jobs", type=int, default=1000, help="jobs in the bulk run")
    bench_adapter.add_argument("--backends", type=int, default=4, help="test ComfyUI servers")
    bench_adapter.add_argument("--serial", type=int, default=200, help="jobs run one at a time")
    bench_adapter.add_argument(
        "--adapters", type=int, default=1, help="adapters sharing the queue (compared with 1)"
    )
    bench_adapter.add_argument(
        "--database", default="rcc_bench_adapter", help="bench database (rcc_bench*), recreated"
    )
    bench_adapter.set_defaults(run=_bench("adapter"))
    bench_ui = bench.add_parser("ui", help="page render times with 100,000 jobs (NFR-P1)")
    bench_ui.add_argument("--users", type=int, default=1000)
    bench_ui.add_argument("--jobs", type=int, default=100_000, help="spread over the users")
    bench_ui.add_argument("--runs", type=int, default=50, help="requests per page")
    bench_ui.add_argument(
        "--database", default="rcc_bench_ui", help="bench database (rcc_bench*), reused if full"
    )
    bench_ui.set_defaults(run=_bench("ui"))
    bench_audit = bench.add_parser("audit", help="verification speed (full, since an anchor)")
    bench_audit.add_argument("--events", type=int, default=1_000_000, help="size of the log")
    bench_audit.add_argument("--recent", type=int, default=10_000, help="events after the anchor")
    bench_audit.add_argument(
        "--database", default="rcc_bench_audit", help="bench database (rcc_bench*), reused if full"
    )
    bench_audit.set_defaults(run=_bench("audit"))

    adapter = sub.add_parser("adapter", help="run the ComfyUI adapter alone (COMFYUI_URLS)")
    adapter.set_defaults(run=_adapter)

    webhooks = sub.add_parser("webhooks", help="run billing states and webhook delivery alone")
    webhooks.set_defaults(run=_webhooks)

    projector = sub.add_parser("projector", help="run the projectors alone")
    projector.add_argument("--projection", action="append", help="only these (repeatable)")
    projector.add_argument("--batch-size", type=int, default=1000)
    projector.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    projector.set_defaults(run=_projector)

    replay = sub.add_parser("replay", help="rebuild projections from position 0 and swap them in")
    replay.add_argument("--projection", action="append", help="only these (repeatable)")
    replay.add_argument("--batch-size", type=int, default=5000)
    replay.set_defaults(run=_replay)

    projections = sub.add_parser("projections", help="read models").add_subparsers(
        dest="action", required=True
    )
    proj_status = projections.add_parser(
        "status", help="checkpoint, lag and blocked state of each follower of the log"
    )
    proj_status.add_argument("--json", action="store_true")
    proj_status.set_defaults(run=_projections_status)
    health = sub.add_parser("health", help="a worker's health, for container healthchecks")
    health.add_argument("part", choices=["projector", "adapter"])
    health.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    health.set_defaults(run=_health)
    stripe = sub.add_parser("stripe", help="Stripe").add_subparsers(dest="action", required=True)
    reconcile = stripe.add_parser(
        "reconcile", help="apply the Stripe events (events API) that the ledger lacks"
    )
    reconcile.add_argument("--since", type=_since, required=True, help="DATE or ISO datetime")
    reconcile.set_defaults(run=_stripe_reconcile)
    return parser


def _event_loop_runner() -> Any:
    """uvloop's runner when installed (a faster event loop for the portal), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        code: int = _event_loop_runner()(args.run(args, settings))
        return code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
