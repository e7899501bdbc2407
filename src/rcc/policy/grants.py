"""Policy values for grants and rate limits that used to be read from settings only:
the environment's value is the default, a global (or free-plan) policy overrides it."""

from __future__ import annotations

import asyncpg

from rcc.config import Settings
from rcc.domain.lots import LotPolicy
from rcc.policy.book import int_or_none, resolve
from rcc.policy.keys import FREE_PLAN
from rcc.policy.store import current_book


async def signup_terms(conn: asyncpg.Connection, settings: Settings) -> tuple[int, LotPolicy]:
    """The sign-up grant and how long granted credits last, for a new (free) account."""
    book = await current_book(conn)
    grant = int_or_none(
        resolve(book, "grants.signup_rcc", plan=FREE_PLAN, default=settings.signup_grant_rcc)
    )
    return grant or 0, await lot_policy(conn, settings)


async def lot_policy(conn: asyncpg.Connection, settings: Settings) -> LotPolicy:
    """How long sign-up and top-up credits last (`lots.*_days`; None: never) and how
    much of a month rolls over (`lots.subscription_rollover_rcc`)."""
    book = await current_book(conn)
    signup = resolve(book, "lots.signup_days", default=settings.lots.signup_days)
    topup = resolve(book, "lots.topup_days", default=settings.lots.topup_days)
    rollover = resolve(
        book, "lots.subscription_rollover_rcc", default=settings.lots.subscription_rollover_rcc
    )
    return LotPolicy(
        signup_days=int_or_none(signup),
        topup_days=int_or_none(topup),
        subscription_days=settings.lots.subscription_days,
        subscription_rollover_rcc=int_or_none(rollover) or 0,
    )


async def register_per_hour(conn: asyncpg.Connection, settings: Settings) -> int:
    """Sign-ups allowed per client address per hour (`ratelimit.register_per_hour`)."""
    book = await current_book(conn)
    value = resolve(
        book, "ratelimit.register_per_hour", default=settings.rate_limits.register_per_hour
    )
    return int_or_none(value) or settings.rate_limits.register_per_hour


async def login_per_min(conn: asyncpg.Connection, settings: Settings) -> int:
    """Sign-in attempts allowed per client address per minute (`ratelimit.login_per_min`;
    RCC_RATE_LOGIN_PER_MIN below it), password and GitLab alike."""
    book = await current_book(conn)
    value = resolve(book, "ratelimit.login_per_min", default=settings.rate_limits.login_per_min)
    return int_or_none(value) or settings.rate_limits.login_per_min
