"""Credit lots, the pure decisions: spending order, releases, clawbacks, expiry, migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rcc.domain import wallet as wallets
from rcc.domain.errors import InsufficientCredits, Invalid
from rcc.domain.events import (
    CreditsClawedBack,
    CreditsExpired,
    CreditsReleased,
    CreditsReserved,
    Event,
    LotsOpened,
    SignupGranted,
    TopupGranted,
    WalletOpened,
)
from rcc.domain.lots import DRAW_GUARD, RELEASE_GRACE, to_us

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def opened() -> wallets.WalletState:
    return wallets.fold([WalletOpened(wallet_id="w", owner_kind="user", owner_id="u", lots=True)])


def granted(
    state: wallets.WalletState, amount: int, lifetime: timedelta | None, ref: str | None = None
) -> wallets.WalletState:
    events = wallets.grant(state, TopupGranted, amount, T0, lifetime=lifetime, ref=ref)
    return wallets.fold(events, state)


def reserve(state: wallets.WalletState, job: str, cost: int, now: datetime) -> list[Event]:
    events = wallets.reserve(state, job, cost, now)
    assert not isinstance(events, InsufficientCredits), events
    return events


def test_draws_follow_priority_then_soonest_expiry_then_age() -> None:
    state = granted(opened(), 5, None)  # L1: never expires
    state = granted(state, 5, 30 * DAY)  # L2: expires last of the dated
    state = granted(state, 5, 10 * DAY)  # L3: expires soonest
    manual = wallets.adjust(state, 5, "admin", "promo", T0, expires_at=T0 + 5 * DAY)
    assert not isinstance(manual, Invalid)
    state = wallets.fold(manual, state)  # L4: manual, soonest of all
    events = reserve(state, "j", 17, T0 + DAY)
    assert events == [
        CreditsReserved(job="j", amount=17, draws=(("L4", 5), ("L3", 5), ("L2", 5), ("L1", 2)))
    ]
    after = wallets.fold(events, state)
    assert after.balance == 3 and [lot.id for lot in after.lots] == ["L1", "L2", "L3", "L4"]


def test_an_expired_lot_is_never_drawn_even_before_the_scheduler_ran() -> None:
    state = granted(granted(opened(), 4, DAY), 4, None)
    assert wallets.spendable(state, T0 + DAY) == 4  # balance still 8: no event yet
    refused = wallets.reserve(state, "j", 5, T0 + DAY)
    assert isinstance(refused, InsufficientCredits) and refused.balance_rcc == 4
    # Within the guard before the expiry the lot is no longer drawn either.
    events = reserve(state, "j", 4, T0 + DAY - DRAW_GUARD / 2)
    assert events[0] == CreditsReserved(job="j", amount=4, draws=(("L2", 4),))


def test_a_release_returns_exactly_the_draws() -> None:
    state = granted(granted(opened(), 3, DAY), 3, None)
    drawn = (("L1", 3), ("L2", 2))
    state = wallets.fold(reserve(state, "j", 5, T0), state)
    assert [lot.id for lot in state.lots] == ["L1", "L2"]  # L1 is empty but pinned
    released = wallets.release(state, "j", 5, T0 + DAY / 2, drawn)
    assert released == [CreditsReleased(job="j", amount=5, draws=drawn, drawn=drawn)]
    after = wallets.fold(released, state)
    assert [(lot.id, lot.remaining) for lot in after.lots] == [("L1", 3), ("L2", 3)]
    assert after.pinned == {} and after.open_jobs == 0


def test_a_release_whose_lot_expired_becomes_a_new_lot_for_seven_days() -> None:
    state = granted(granted(opened(), 3, DAY), 3, None)
    state = wallets.fold(reserve(state, "j", 5, T0), state)
    late = T0 + 2 * DAY
    expired = wallets.expire(state, "L1", late)
    assert expired == []  # all of L1 was drawn: nothing is left to expire
    drawn = (("L1", 3), ("L2", 2))
    released = wallets.release(state, "j", 5, late, drawn)
    assert released == [
        CreditsReleased(
            job="j", amount=5, draws=(("L2", 2),), drawn=drawn, relot="L3",
            relot_expires_at=late + RELEASE_GRACE, at=late,
        )
    ]  # fmt: skip
    after = wallets.fold(released, state)
    assert {lot.id: lot.remaining for lot in after.lots} == {"L2": 3, "L3": 3}
    assert after.balance == 6 and after.pinned == {}  # the empty L1 has left


def test_expiry_takes_what_is_left_once() -> None:
    state = granted(opened(), 10, DAY)
    state = wallets.fold(reserve(state, "j", 4, T0), state)
    assert wallets.expire(state, "L1", T0 + DAY - timedelta(microseconds=1)) == []
    events = wallets.expire(state, "L1", T0 + DAY)
    assert events == [CreditsExpired(lot="L1", amount=6, expires_at=T0 + DAY)]
    after = wallets.fold(events, state)
    assert after.balance == 0  # 4 were drawn by the open job, 6 expired
    assert wallets.expire(after, "L1", T0 + 2 * DAY) == []


def test_a_clawback_takes_the_payments_own_lot_first_never_below_zero() -> None:
    state = granted(granted(opened(), 5, DAY, ref="pay-a"), 5, None, ref="pay-b")
    events = wallets.claw_back(state, 7, "pay-b", T0)
    assert events == [
        CreditsClawedBack(amount=7, shortfall=0, ref="pay-b", draws=(("L2", 5), ("L1", 2)))
    ]
    after = wallets.fold(events, state)
    more = wallets.claw_back(after, 9, "pay-a", T0)
    assert more[-1] == CreditsClawedBack(amount=3, shortfall=6, ref="pay-a", draws=(("L1", 3),))
    assert wallets.fold(more, after).balance == 0


def test_a_wallet_from_before_lots_moves_its_balance_into_one_lot() -> None:
    old = wallets.fold(
        [
            WalletOpened(wallet_id="w", owner_kind="user", owner_id="u"),
            SignupGranted(amount=7),
            CreditsReserved(job="old", amount=2),
        ]
    )
    assert not old.lots_on and old.balance == 5
    events = reserve(old, "j", 1, T0)
    assert events[0] == LotsOpened(lot="L1", amount=5, at=T0)
    after = wallets.fold(events, old)
    assert after.lots_on and after.balance == 4 and after.lots[0].expires_us is None
    # The job reserved before lots comes back as a lot without expiry.
    released = wallets.release(after, "old", 2, T0, ())
    assert released[0].relot == "L2" and released[0].relot_expires_at is None  # type: ignore[attr-defined]
    assert wallets.fold(released, after).balance == 6


@given(
    grants=st.lists(
        st.tuples(st.integers(1, 20), st.one_of(st.none(), st.integers(1, 10))),
        min_size=1,
        max_size=8,
    ),
    costs=st.lists(st.integers(1, 15), max_size=12),
    at_day=st.integers(0, 12),
)
def test_balance_is_the_sum_of_unexpired_remainders(
    grants: list[tuple[int, int | None]], costs: list[int], at_day: int
) -> None:
    state = opened()
    for amount, days in grants:
        state = granted(state, amount, None if days is None else days * DAY)
    now = T0 + at_day * DAY + timedelta(hours=1)
    for n, cost in enumerate(costs):
        events = wallets.reserve(state, f"j{n}", cost, now)
        if isinstance(events, InsufficientCredits):
            assert wallets.spendable(state, now) < cost
            continue
        state = wallets.fold(events, state)
        assert all(lot.remaining >= 0 for lot in state.lots)
    assert state.balance == sum(lot.remaining for lot in state.lots)
    live = sum(lot.remaining for lot in state.lots if lot.live_at(to_us(now)))
    assert wallets.spendable(state, now) == live
