"""`rcc policy get|set|history|seed-plans` (h6): the same commands and resolution as
the admin API, for operators at a shell. Output is JSON, one document per call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from rcc.config import Settings
from rcc.domain.errors import DomainError, error_code
from rcc.policy import KEYS, PolicyBook, current_book, resolve
from rcc.policy.plans import SEED_DAILY_LIMITS
from rcc.service.commands import Command

_SCOPES = ["global", "plan", "org", "user"]


def _instant(text: str) -> datetime:
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 2026-01-31T10:00Z") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _value(text: str) -> object:
    """`none`, a whole number, or comma-separated whole numbers (a schedule)."""
    if text.strip().lower() in {"none", "null", "unlimited", "never"}:
        return None
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (or a list)") from None
    return numbers if "," in text else numbers[0]


def _print(value: object) -> None:
    print(msgspec.json.encode(value).decode())


async def policy_get(args: argparse.Namespace, settings: Settings) -> int:
    """Print the value of a key for a user/org/plan at an instant (default now)."""
    if args.key not in KEYS:
        print(f"error: unknown key {args.key!r}; one of {sorted(KEYS)}", file=sys.stderr)
        return 2
    book = await _read_book(settings)
    value = resolve(book, args.key, user=args.user, org=args.org, plan=args.plan, at=args.at)
    _print({"key": args.key, "value": value})
    return 0


async def policy_set(args: argparse.Namespace, settings: Settings) -> int:
    """Record a PolicySet (actor `cli:<user>`), like PUT /admin/policies/{key}."""
    from rcc.service.policy_commands import SetPolicy

    command = SetPolicy(
        key=args.key, scope=args.scope, scope_id=args.scope_id or "", value=args.value,
        effective_at=args.effective_at, reason=args.reason, actor=f"cli:{_login()}",
    )  # fmt: skip
    return await _execute(settings, [command])


async def policy_seed_plans(args: argparse.Namespace, settings: Settings) -> int:
    """Write the seed's plan daily limits (Free 20/day ... Enterprise unlimited) for the
    plans that have no plan-scoped limit yet; running it again writes nothing."""
    from rcc.service.policy_commands import SetPolicy

    book = await _read_book(settings)
    set_already = {s[2] for s in book.slots() if s[:2] == ("limits.daily_rcc", "plan")}
    commands = [
        SetPolicy(
            key="limits.daily_rcc",
            scope="plan",
            scope_id=plan,
            value=limit,
            reason="seed plan limits",
            actor=f"cli:{_login()}",
        )
        for plan, limit in SEED_DAILY_LIMITS.items()
        if plan not in set_already
    ]
    return await _execute(settings, commands)


async def _read_book(settings: Settings) -> PolicyBook:
    """The policy book as recorded now, through a pool opened for this one read."""
    from rcc.bootstrap import open_pool

    pool = await open_pool(settings)
    try:
        async with pool.acquire() as conn:
            return await current_book(conn)
    finally:
        await pool.close()


async def _execute(settings: Settings, commands: Sequence[Command]) -> int:
    from rcc.bootstrap import open_pool
    from rcc.service.bus import execute

    pool = await open_pool(settings)
    try:
        for command in commands:
            done = await execute(pool, command, metadata={"actor": "cli", "via": "cli"})
            if isinstance(done, DomainError):
                print(f"error: {error_code(done)}: {done.detail}", file=sys.stderr)
                return 1
            _print(done.result)
    finally:
        await pool.close()
    return 0


async def policy_history(args: argparse.Namespace, settings: Settings) -> int:
    """Print every change of a key recorded up to --as-of, oldest first, and the value
    in effect then for the user/org/plan given."""
    book = await _read_book(settings)
    when = args.as_of or datetime.now(UTC)
    changes = [e for e in book.entries if e.key == args.key and e.recorded_at <= when]
    value = resolve(book, args.key, user=args.user, org=args.org, plan=args.plan, at=when)
    _print({"key": args.key, "as_of": when, "resolved": value, "items": changes})
    return 0


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `rcc policy ...` subcommands."""
    policy = sub.add_parser("policy", help="scoped, audited configuration").add_subparsers(
        dest="action", required=True
    )
    get = policy.add_parser("get", help="the value in effect for a user/org/plan")
    history = policy.add_parser("history", help="changes of a key and the value as of a time")
    for command in (get, history):
        command.add_argument("key", choices=sorted(KEYS))
        command.add_argument("--user")
        command.add_argument("--org")
        command.add_argument("--plan")
    get.add_argument("--at", type=_instant, help="an instant (default now)")
    get.set_defaults(run=policy_get)
    history.add_argument("--as-of", type=_instant, help="an instant (default now)")
    history.set_defaults(run=policy_history)
    put = policy.add_parser("set", help="set a key for a scope (an audited event)")
    put.add_argument("key", choices=sorted(KEYS))
    put.add_argument("value", type=_value, help="a whole number, a,b,c for a list, or none")
    put.add_argument("--scope", choices=_SCOPES, default="global")
    put.add_argument("--scope-id", help="the plan, org or user id (not for global)")
    put.add_argument("--effective-at", type=_instant, help="a future instant (default now)")
    put.add_argument("--reason", required=True)
    put.set_defaults(run=policy_set)
    seed = policy.add_parser("seed-plans", help="the seed's daily limits per plan (once)")
    seed.set_defaults(run=policy_seed_plans)
