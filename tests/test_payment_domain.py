"""The payment aggregate's pure rules, driven by hypothesis: whatever the order of months
granted and reversals reported, nothing is reclaimed twice and the clawback policy holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rcc.domain import payment as payments
from rcc.domain.events import (
    Event,
    PaymentDisputed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionMonthGranted,
)
from rcc.domain.payment import PaymentState, SubscriptionState

PER_MONTH, AMOUNT = 300, 12_000
Step = tuple[str, int]


def _annual() -> PaymentState:
    paid = PaymentSucceeded(
        payment_key="pi_1", kind="subscription", product="starter", interval="year",
        amount=AMOUNT, currency="usd", credits=12 * PER_MONTH, credits_per_month=PER_MONTH,
        months=12, period_start=1_900_000_000, subscription_id="sub_1", user_id="u",
        wallet_id="u",
    )  # fmt: skip
    return payments.fold_payment(payments.settle(paid))


def _apply(state: PaymentState, step: Step) -> PaymentState:
    kind, value = step
    event: Event | str
    if kind == "month":
        event = payments.month_decision(state, SubscriptionState(), value)
        if isinstance(event, str):
            return state
        if isinstance(event, SubscriptionMonthGranted):
            state = payments.evolve_payment(state, event)
            kind = "after-grant"
        else:
            return payments.evolve_payment(state, event)
    elif kind == "refund":
        state = payments.evolve_payment(state, PaymentRefunded(payment_key="pi_1", amount=value))
    else:
        state = payments.evolve_payment(state, PaymentDisputed(payment_key="pi_1", amount=value))
    due = payments.reclaim_due(state)
    if due is not None:
        state = payments.evolve_payment(state, payments.reclaimed(state, due, due.credits, 0))
    return state


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("month"), st.integers(1, 11)),
        st.tuples(st.just("refund"), st.integers(0, AMOUNT)),
        st.tuples(st.just("dispute"), st.integers(0, AMOUNT)),
    ),
    max_size=30,
)


@given(STEPS)
def test_reclaims_never_exceed_grants_and_follow_the_reversed_share(steps: list[Step]) -> None:
    state = _annual()
    for step in steps:
        before = state.credits_reclaimed
        state = _apply(state, step)
        assert state.credits_reclaimed >= before, "a reclaim is never undone"
        assert state.credits_reclaimed <= state.credits_granted
    for month in range(1, 12):  # the rest of the year, in order
        state = _apply(state, ("month", month))
    reversed_ = min(AMOUNT, state.refunded_amount + state.disputed_amount)
    if reversed_ >= AMOUNT:
        assert state.credits_granted - state.credits_reclaimed == 0, "nothing kept"
    else:
        owed = 12 * PER_MONTH * reversed_ // AMOUNT
        assert state.credits_granted == 12 * PER_MONTH
        assert state.credits_reclaimed == owed, "exactly the refunded share, once"


def test_a_pack_refunded_in_two_steps_is_reclaimed_in_proportion() -> None:
    paid = PaymentSucceeded(
        payment_key="pi_2", kind="topup", product="M", amount=2500, currency="usd", credits=550
    )
    state = payments.fold_payment(payments.settle(paid))
    state = _apply(state, ("refund", 1000))
    assert state.credits_reclaimed == 220
    state = _apply(state, ("refund", 1000))  # the same report again: nothing more
    assert state.credits_reclaimed == 220
    state = _apply(state, ("refund", 2500))
    assert state.credits_reclaimed == 550 and payments.reclaim_due(state) is None
