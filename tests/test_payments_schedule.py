"""Annual plans credited monthly: the durable schedule and its scheduler, driven by an
injectable clock across simulated months; restarts, concurrency and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from rcc.audit import verify
from rcc.config import Settings
from rcc.domain.payment import add_months, month_due, month_span
from rcc.projector.runtime import ProjectorWorker
from rcc.service.scheduler import GrantScheduler
from tests import stripe_payloads as sp
from tests.conftest import portal_client
from tests.payment_helpers import (
    STARTER,
    STARTER_PER_MONTH,
    balance,
    caught_up,
    deliver,
    delivered,
    payment_row,
    with_stripe,
)
from tests.portal_helpers import sign_up

# The last day of a month, so the calendar has to clamp (Feb 28, Apr 30, ...).
T0 = datetime(2031, 1, 31, 9, 0, tzinfo=UTC)


class Clock:
    """The scheduler's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def month(self, index: int) -> None:
        self.now = add_months(T0, index) + timedelta(hours=1)


@pytest.fixture
async def http(
    settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(create_app(with_stripe(settings), pool=pool)) as client:
        yield client


async def _annual(http: httpx.AsyncClient) -> tuple[str, str, str]:
    """A user whose annual Starter plan was paid at T0: (user, subscription, payment key)."""
    user = (await sign_up(http)).user_id
    sub, pi = sp.new_id("sub"), sp.new_id("pi")
    price_id, amount = STARTER["year"]
    start = int(T0.timestamp())
    body = sp.invoice(
        user_id=user, plan="starter", interval="year", price_id=price_id, amount=amount,
        period_start=start, period_end=int(add_months(T0, 12).timestamp()),
        subscription=sub, payment_intent=pi,
    )  # fmt: skip
    assert (await delivered(http, sp.event("invoice.paid", body)))["outcome"] == "granted"
    return user, sub, pi


async def _grants(pool: asyncpg.Pool, user: str) -> list[str]:
    """The periods of the user's SUBSCRIPTION_GRANT lines, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT data->>'period' AS period FROM events
                WHERE stream_id = $1 AND type = 'subscription_granted' ORDER BY version""",
            f"wallet-{user}",
        )
    return [r["period"] for r in rows]


def _granted(results: list[Any]) -> list[int]:
    return [r.month_index for r in results if r.outcome == "granted"]


async def test_an_annual_plan_followed_for_13_months_grants_exactly_12_months(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user, _, pi = await _annual(http)
    assert await balance(pool, user) == STARTER_PER_MONTH, "month 1 of 12 at once"
    clock = Clock(T0)
    scheduler = GrantScheduler(pool, clock=clock)
    assert await scheduler.tick() == [], "nothing is due before its month"
    for month in range(1, 14):
        clock.month(month)
        clock.now -= timedelta(hours=2)  # just before the month falls due
        assert await scheduler.tick() == []
        clock.month(month)
        assert _granted(await scheduler.tick()) == ([month] if month < 12 else [])
    periods = await _grants(pool, user)
    assert len(periods) == 12
    assert periods == [month_span(int(T0.timestamp()), i) for i in range(12)]
    assert periods[1] == "2031-02-28/2031-03-31" and periods[11] == "2031-12-31/2032-01-31"
    # Twelve grants, and each month's ends the month before's lot (docs/LOTS.md).
    assert await balance(pool, user) == STARTER_PER_MONTH
    await caught_up(pool)
    row = await payment_row(pool, pi)
    assert (row["status"], row["credits_rcc"], row["credits_granted_rcc"]) == ("paid", 3600, 3600)
    assert (await verify(owner)).ok


async def test_cancellation_in_month_5_stops_the_months_after_it(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user, sub, _ = await _annual(http)
    clock = Clock(T0)
    scheduler = GrantScheduler(pool, clock=clock)
    for month in range(1, 6):
        clock.month(month)
        assert _granted(await scheduler.tick()) == [month]
    ended_at = int((add_months(T0, 5) + timedelta(days=10)).timestamp())
    deleted = sp.subscription(
        subscription_id=sub, user_id=user, plan="starter", price_id=STARTER["year"][0],
        ended_at=ended_at,
    )  # fmt: skip
    answer = await delivered(http, sp.event("customer.subscription.deleted", deleted))
    assert answer["outcome"] == "ended"
    for month in range(6, 14):
        clock.month(month)
        assert await scheduler.tick() == []
    assert len(await _grants(pool, user)) == 6  # months 0..5
    async with pool.acquire() as conn:
        cancelled = await conn.fetchval(
            "SELECT count(*) FROM subscription_schedule WHERE cancelled_at IS NOT NULL"
        )
    assert cancelled == 6
    await caught_up(pool)
    async with pool.acquire() as conn:
        plan = await conn.fetchrow("SELECT plan, plan_active_until FROM users WHERE id = $1", user)
    assert plan["plan"] == "starter"
    assert plan["plan_active_until"] == datetime.fromtimestamp(ended_at, UTC), "ends with it"


async def test_a_restart_or_a_second_scheduler_neither_loses_nor_doubles_a_month(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user, _, _ = await _annual(http)
    clock = Clock(T0)
    first = GrantScheduler(pool, clock=clock)
    for month in range(1, 5):
        clock.month(month)
        await first.tick()
    # The process stops; months 5..8 fall due while it is down. A new one catches up.
    clock.month(8)
    again = GrantScheduler(pool, clock=clock)
    assert _granted(await again.tick()) == [5, 6, 7, 8]
    assert await again.tick() == []
    # Two schedulers at once (two processes) on the same due months.
    clock.month(10)
    one, two = GrantScheduler(pool, clock=clock), GrantScheduler(pool, clock=clock)
    both = await asyncio.gather(one.tick(), two.tick())
    granted = sorted(_granted(both[0]) + _granted(both[1]))
    assert granted == [9, 10]
    clock.month(13)
    await GrantScheduler(pool, clock=clock).tick()
    assert len(await _grants(pool, user)) == 12
    # Twelve grants, and each month's ends the month before's lot (docs/LOTS.md).
    assert await balance(pool, user) == STARTER_PER_MONTH
    assert (await verify(owner)).ok


async def test_a_crash_mid_tick_is_repaired_by_the_next_one(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A tick cancelled half-way (the process killed) committed whole months or nothing."""
    user, _, _ = await _annual(http)
    clock = Clock(T0)
    clock.month(11)
    doomed = GrantScheduler(pool, clock=clock)
    task = asyncio.create_task(doomed.tick())
    for _ in range(200):  # until some (not necessarily all) months have been granted
        await asyncio.sleep(0.005)
        if len(await _grants(pool, user)) > 2:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await GrantScheduler(pool, clock=clock).tick()
    assert len(await _grants(pool, user)) == 12
    # Twelve grants, and each month's ends the month before's lot (docs/LOTS.md).
    assert await balance(pool, user) == STARTER_PER_MONTH


async def test_run_and_stop_with_a_full_refund_stopping_the_rest(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user, _, pi = await _annual(http)
    clock = Clock(T0)
    clock.month(3)
    scheduler = GrantScheduler(pool, clock=clock, interval_s=0.02)
    task = asyncio.create_task(scheduler.run())
    for _ in range(500):
        if len(await _grants(pool, user)) == 4:
            break
        await asyncio.sleep(0.01)
    scheduler.stop()
    await asyncio.wait_for(task, 10)
    assert len(await _grants(pool, user)) == 4
    # A full refund: the 4 months granted are clawed back and the other 8 never come.
    refund = sp.charge(payment_intent=pi, amount=12000, amount_refunded=12000)
    assert (await delivered(http, sp.event("charge.refunded", refund)))["outcome"] == "refunded"
    assert await balance(pool, user) == 0
    clock.month(13)
    assert await GrantScheduler(pool, clock=clock).tick() == []
    await caught_up(pool)
    row = await payment_row(pool, pi)
    # Months 1-3 ended when the next came: the refund takes what the 4th month left.
    assert (row["status"], row["credits_granted_rcc"], row["clawed_back_rcc"]) == (
        "refunded",
        4 * STARTER_PER_MONTH,
        STARTER_PER_MONTH,
    )


def test_months_are_counted_from_the_period_start_and_clamped() -> None:
    start = int(T0.timestamp())
    dues = [datetime.fromtimestamp(month_due(start, i), UTC).date().isoformat() for i in range(13)]
    assert dues[:4] == ["2031-01-31", "2031-02-28", "2031-03-31", "2031-04-30"]
    assert dues[12] == "2032-01-31"
    leap = datetime(2032, 1, 31, tzinfo=UTC)
    assert add_months(leap, 1).date().isoformat() == "2032-02-29"


async def test_ten_simultaneous_deliveries_of_an_annual_invoice_schedule_it_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = (await sign_up(http)).user_id
    sub = sp.new_id("sub")
    price_id, amount = STARTER["year"]
    body = sp.invoice(
        user_id=user, plan="starter", interval="year", price_id=price_id, amount=amount,
        period_start=int(T0.timestamp()), period_end=int(add_months(T0, 12).timestamp()),
        subscription=sub, payment_intent=sp.new_id("pi"),
    )  # fmt: skip
    event = sp.event("invoice.paid", body)
    answers = await asyncio.gather(*(deliver(http, event) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert await balance(pool, user) == STARTER_PER_MONTH
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT month_index, due_at FROM subscription_schedule ORDER BY month_index"
        )
    assert [r["month_index"] for r in rows] == list(range(1, 12))
    assert rows[0]["due_at"] == datetime(2031, 2, 28, 9, 0, tzinfo=UTC)
    clock = Clock(T0)
    clock.month(12)
    assert len(_granted(await GrantScheduler(pool, clock=clock).tick())) == 11
    # Twelve grants, and each month's ends the month before's lot (docs/LOTS.md).
    assert await balance(pool, user) == STARTER_PER_MONTH
