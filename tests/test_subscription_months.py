"""Subscription months (docs/LOTS.md): a month's credits end when the next month's are
granted, with up to RCC_SUBSCRIPTION_ROLLOVER_RCC carried into a lot lasting one more
month; written in the grant's transaction, so replay and the audit stay exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from projections.registry import ALL
from rcc.audit import verify
from rcc.config import load_settings
from rcc.domain import wallet as wallets
from rcc.domain.events import (
    CreditsReserved,
    CreditsRolledOver,
    SubscriptionGranted,
    SubscriptionLotSuperseded,
    WalletOpened,
    decode_event,
)
from rcc.domain.lots import LotPolicy
from rcc.domain.subscription_months import month_grant
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.store.heads import read_head
from rcc.store.time_travel import wallet_as_of
from tests.helpers import balance_of, funded_user
from tests.projection_helpers import done, drain, dump

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MONTH = timedelta(days=31)


def _first_month(spent: int) -> wallets.WalletState:
    """A wallet with one month of 100 RCC granted at T0, `spent` of it drawn by a job."""
    state = wallets.fold([WalletOpened(wallet_id="w", owner_kind="user", owner_id="u", lots=True)])
    state = wallets.fold(
        month_grant(state, 100, T0, lifetime=MONTH, rollover_cap=0, ref="p1", period="1"), state
    )
    if spent:
        state = wallets.fold(
            [CreditsReserved(job="j", amount=spent, draws=(("L1", spent),))], state
        )
    return state


def test_the_next_month_ends_the_last_and_rolls_over_at_most_the_cap() -> None:
    state = _first_month(spent=30)
    later = T0 + timedelta(days=30)  # before the first month's backstop expiry
    events = month_grant(state, 100, later, lifetime=MONTH, rollover_cap=20, ref="p2", period="2")
    assert events == [
        SubscriptionLotSuperseded(lot="L1", amount=70, expires_at=later, by="L3", rolled_over="L2"),
        CreditsRolledOver(
            amount=20, ref="p1", lot="L2", at=later, expires_at=later + MONTH, from_lots=("L1",)
        ),
        SubscriptionGranted(
            amount=100, ref="p2", lot="L3", at=later, expires_at=later + MONTH, period="2"
        ),
    ]
    after = wallets.fold(events, state)
    assert after.balance == 120
    assert {lot.id: lot.remaining for lot in after.lots if lot.remaining} == {"L2": 20, "L3": 100}
    # The rollover is spent first (same expiry, older id) and is not a month's lot:
    # the month after ends only the second month's lot.
    third = month_grant(
        after, 100, later + timedelta(days=30), lifetime=MONTH, rollover_cap=20, ref="p3",
        period="3",
    )  # fmt: skip
    assert [e.lot for e in third if isinstance(e, SubscriptionLotSuperseded)] == ["L3"]


def test_no_rollover_by_default_and_never_more_than_was_left() -> None:
    state = _first_month(spent=95)
    later = T0 + timedelta(days=30)
    plain = month_grant(state, 100, later, lifetime=MONTH, rollover_cap=0, ref="p2", period="2")
    assert [type(e) for e in plain] == [SubscriptionLotSuperseded, SubscriptionGranted]
    assert wallets.fold(plain, state).balance == 100
    generous = month_grant(
        state, 100, later, lifetime=MONTH, rollover_cap=500, ref="p2", period="2"
    )
    rolled = [e for e in generous if isinstance(e, CreditsRolledOver)]
    assert [e.amount for e in rolled] == [5]
    assert wallets.fold(generous, state).balance == 105
    # A month whose own time has passed is the expiry scheduler's, not the next grant's.
    late = month_grant(
        state, 100, T0 + MONTH, lifetime=MONTH, rollover_cap=500, ref="p2", period="2"
    )
    assert [type(e) for e in late] == [SubscriptionGranted]


def test_the_rollover_setting() -> None:
    assert load_settings({}).lots.subscription_rollover_rcc == 0
    env = {"RCC_SUBSCRIPTION_ROLLOVER_RCC": "25"}
    assert load_settings(env).lots.subscription_rollover_rcc == 25


async def test_months_on_the_store_replay_and_audit_exactly(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 0)
    policy = LotPolicy(subscription_rollover_rcc=10)
    month = c.GrantCredits(user_id=user, kind="subscription", amount=50, ref="m1", lots=policy)
    await done(pool, month)
    await done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    await done(pool, msgspec.structs.replace(month, ref="m2"))
    rows = await owner.fetch(
        """SELECT type, data, tx_id::text AS tx FROM events WHERE stream_id = $1
            ORDER BY position""",
        f"wallet-{user}",
    )
    last = [r for r in rows if r["tx"] == rows[-1]["tx"]]
    # One transaction: the first month ends, 10 roll over, the second month is granted.
    assert [r["type"] for r in last] == [
        "subscription_lot_superseded",
        "credits_rolled_over",
        "subscription_granted",
    ]
    ended = decode_event(last[0]["type"], last[0]["data"])
    assert isinstance(ended, SubscriptionLotSuperseded)
    cost = 50 - ended.amount  # what the job drew from the first month
    assert cost > 0
    folded = await wallet_as_of(owner, user)
    assert folded.balance == 10 + 50 == await balance_of(owner, user)
    head = await read_head(owner, f"wallet-{user}")
    assert head.as_state(wallets.WalletState) == folded
    report = await verify(owner)
    assert report.ok, report.problems
    # The read models: the ledger says what happened; a replay rebuilds them equal.
    await drain(pool)
    notes = await owner.fetch(
        "SELECT reason, delta, note FROM rcc_ledger WHERE wallet_id = $1 ORDER BY id", user
    )
    assert [tuple(n) for n in notes][-3:] == [
        (
            "CREDITS_EXPIRED",
            -ended.amount,
            "lot L1 ended: the next month's credits were granted; part rolled over as lot L2",
        ),
        ("SUBSCRIPTION_GRANT", 10, "rolled over from lot L1 for one more month"),
        ("SUBSCRIPTION_GRANT", 50, None),
    ]
    lots = await owner.fetch(
        "SELECT lot_id, source, remaining, expired_at IS NOT NULL AS expired FROM lots"
        " WHERE wallet_id = $1 ORDER BY lot_id",
        user,
    )
    assert [tuple(r) for r in lots] == [
        ("L1", "subscription", 0, True),
        ("L2", "rollover", 10, False),
        ("L3", "subscription", 50, False),
    ]
    live = await dump(owner)
    await replay(owner, ALL)
    assert await dump(owner) == live


def test_a_job_released_after_its_month_ended_comes_back_as_a_new_lot() -> None:
    """The month's lot ended early (superseded) while a job still held part of it: the
    release must not go back into the ended lot (the audit calls that a return after
    expiry) but become a lot lasting RELEASE_GRACE."""
    state = _first_month(spent=30)
    later = T0 + timedelta(days=10)  # long before the first month's backstop date
    state = wallets.fold(
        month_grant(state, 100, later, lifetime=MONTH, rollover_cap=0, ref="p2", period="2"),
        state,
    )
    back = wallets.release(state, "j", 30, later + timedelta(hours=1), drawn=(("L1", 30),))
    (released,) = back
    assert released.draws == ()
    assert released.relot == "L3"
    assert released.relot_expires_at == later + timedelta(hours=1) + wallets.RELEASE_GRACE
    after = wallets.fold(back, state)
    assert after.balance == 130
    assert {lot.id: lot.remaining for lot in after.lots if lot.remaining} == {"L2": 100, "L3": 30}
