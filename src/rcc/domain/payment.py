"""Payments and subscriptions: pure decisions over what Stripe reported.

A payment stream (`payment-<key>`) folds every fact about one payment: what it is for
(the catalog's offer), whether it was paid, which months of a plan were credited and
what was refunded or disputed. Its state alone decides whether credits are granted, so
a fact delivered twice, late or out of order never grants twice.

Clawback policy (REFUND_CLAWBACK): a payment reversed by a fraction r (refunded plus
disputed over the amount paid, at most 1) owes back floor(r x the credits it bought).
A full reversal also stops the plan months not yet granted; those count as given back.
What is owed is taken from the credits granted so far, at most the balance (never below
zero); the rest is recorded as the shortfall, visible to admins, and not chased again.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from rcc.domain.events import (
    Event,
    PaymentAliased,
    PaymentDisputed,
    PaymentFact,
    PaymentFailed,
    PaymentHeld,
    PaymentPending,
    PaymentReclaimed,
    PaymentRefunded,
    PaymentRejected,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionLinked,
    SubscriptionMonthGranted,
    SubscriptionMonthSkipped,
    SubscriptionPaymentHeld,
)

SETTLED = frozenset({"paid", "rejected", "held"})  # a paid event has nothing more to do
F = TypeVar("F", bound=PaymentFact)


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """What the catalog says a payment buys and costs (price None: not in the catalog)."""

    kind: str  # "topup" or "subscription"
    product: str = ""
    interval: str | None = None
    price: int | None = None
    currency: str | None = None
    credits: int = 0
    credits_per_month: int = 0
    months: int = 0


class PaymentFacts(msgspec.Struct, frozen=True, kw_only=True):
    """One payment as a Stripe event describes it."""

    payment_key: str
    offer: Offer
    subtotal: int  # before discounts and tax: what the catalog price is compared with
    amount: int  # what was charged
    currency: str
    user_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    session_id: str | None = None
    period_start: int | None = None
    period_end: int | None = None
    org_id: str | None = None  # h5: bought for this organisation's wallet


class PaymentState(msgspec.Struct, frozen=True, kw_only=True):
    payment_key: str = ""
    status: str = ""  # pending, held, paid, rejected, failed (reversals: see the amounts)
    kind: str = ""
    product: str = ""
    interval: str | None = None
    amount: int = 0
    currency: str = ""
    credits: int = 0
    credits_per_month: int = 0
    months: int = 0
    period_start: int | None = None
    period_end: int | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    wallet_id: str | None = None
    paid: bool = False
    granted_months: list[int] = []
    skipped_months: list[int] = []
    credits_granted: int = 0
    refunded_amount: int = 0
    disputed_amount: int = 0
    credits_reclaimed: int = 0  # clawed back plus shortfall
    stopped: bool = False  # no further plan months
    alias_of: str | None = None  # this key names another payment (PaymentAliased)


class SubscriptionState(msgspec.Struct, frozen=True, kw_only=True):
    subscription_id: str = ""
    user_id: str | None = None
    plan: str = ""
    held: list[str] = []  # payment keys waiting for the user
    ended_at: int | None = None


_FACT_FIELDS = tuple(
    f for f in PaymentFact.__struct_fields__ if f not in {"payment_key", "user_id", "wallet_id"}
)


def evolve_payment(state: PaymentState, event: Event) -> PaymentState:
    """Fold one event into a payment's state."""
    replace = msgspec.structs.replace
    match event:
        case PaymentFact():
            terms = {f: getattr(event, f) for f in _FACT_FIELDS}
            people = {"user_id": event.user_id or state.user_id}
            people["wallet_id"] = event.wallet_id or state.wallet_id
            status = _STATUS[type(event)]
            granted = state.credits_granted
            if status == "paid" and event.kind == "topup":
                granted = event.credits  # a pack is granted whole; plans month by month
            return replace(
                state,
                payment_key=event.payment_key,
                status=status,
                paid=state.paid or status == "paid",
                credits_granted=granted,
                **terms,
                **people,
            )
        case SubscriptionMonthGranted():
            return replace(
                state,
                granted_months=[*state.granted_months, event.month_index],
                credits_granted=state.credits_granted + event.credits,
            )
        case SubscriptionMonthSkipped():
            return replace(state, skipped_months=[*state.skipped_months, event.month_index])
        case PaymentRefunded():
            return replace(
                state,
                payment_key=event.payment_key,
                refunded_amount=max(state.refunded_amount, event.amount),
            )
        case PaymentDisputed():
            return replace(
                state,
                payment_key=event.payment_key,
                disputed_amount=max(state.disputed_amount, event.amount),
            )
        case PaymentReclaimed():
            return replace(
                state,
                credits_reclaimed=state.credits_reclaimed + event.credits,
                stopped=state.stopped or event.months_stopped > 0,
            )
        case PaymentAliased():
            return replace(state, alias_of=event.payment_key)
    return state


_STATUS: dict[type, str] = {
    PaymentPending: "pending",
    PaymentHeld: "held",
    PaymentSucceeded: "paid",
    PaymentRejected: "rejected",
    PaymentFailed: "failed",
}


def fold_payment(events: list[Event], state: PaymentState | None = None) -> PaymentState:
    state = state or PaymentState()
    for event in events:
        state = evolve_payment(state, event)
    return state


def evolve_subscription(state: SubscriptionState, event: Event) -> SubscriptionState:
    """Fold one event into a subscription's state."""
    replace = msgspec.structs.replace
    match event:
        case SubscriptionLinked():
            # Linking releases every held payment in the same transaction.
            return replace(
                state,
                subscription_id=event.subscription_id,
                user_id=event.user_id,
                plan=event.plan or state.plan,
                held=[],
            )
        case SubscriptionPaymentHeld():
            return replace(
                state, subscription_id=event.subscription_id, held=[*state.held, event.payment_key]
            )
        case SubscriptionEnded():
            ended = (
                event.ended_at if state.ended_at is None else min(state.ended_at, event.ended_at)
            )
            return replace(state, subscription_id=event.subscription_id, ended_at=ended)
    return state


def fold_subscription(
    events: list[Event], state: SubscriptionState | None = None
) -> SubscriptionState:
    state = state or SubscriptionState()
    for event in events:
        state = evolve_subscription(state, event)
    return state


# --- decisions ------------------------------------------------------------------------


def rejection(facts: PaymentFacts) -> str | None:
    """Why a paid payment buys nothing: its product or price is not the catalog's."""
    offer = facts.offer
    what = "pack" if offer.kind == "topup" else "plan"
    if offer.price is None or not offer.product:
        return f"unknown {what} {offer.product!r}"
    if facts.currency != offer.currency:
        return f"currency {facts.currency!r} is not the catalog's {offer.currency!r}"
    if facts.subtotal != offer.price:
        return (
            f"amount {facts.subtotal} {facts.currency} is not the catalog's price "
            f"{offer.price} for {what} {offer.product}"
            + (f" ({offer.interval})" if offer.interval else "")
        )
    return None


def fact(
    cls: type[F], facts: PaymentFacts, user_id: str | None, wallet_id: str | None, **extra: str
) -> F:
    """A payment event carrying everything the facts and the offer say."""
    offer = facts.offer
    return cls(
        payment_key=facts.payment_key,
        kind=offer.kind,
        product=offer.product,
        interval=offer.interval,
        amount=facts.amount,
        currency=facts.currency,
        credits=offer.credits,
        credits_per_month=offer.credits_per_month,
        months=offer.months,
        period_start=facts.period_start,
        period_end=facts.period_end,
        subscription_id=facts.subscription_id,
        invoice_id=facts.invoice_id,
        session_id=facts.session_id,
        user_id=user_id,
        wallet_id=wallet_id,
        **extra,
    )


def succeeded(payment: PaymentState, user_id: str, wallet_id: str) -> PaymentSucceeded:
    """PaymentSucceeded for a payment whose terms the stream already holds (a held one)."""
    terms = {f: getattr(payment, f) for f in _FACT_FIELDS}
    return PaymentSucceeded(
        payment_key=payment.payment_key, user_id=user_id, wallet_id=wallet_id, **terms
    )


def settle(paid: PaymentSucceeded) -> list[Event]:
    """The events of a payment being paid: itself, and for a plan its first month at once."""
    events: list[Event] = [paid]
    if paid.kind == "subscription":
        events.append(
            SubscriptionMonthGranted(
                payment_key=paid.payment_key,
                month_index=0,
                credits=paid.credits_per_month,
                due_at=paid.period_start or 0,
            )
        )
    return events


def month_decision(
    payment: PaymentState, subscription: SubscriptionState, index: int
) -> Event | str:
    """Grant or skip month `index` of a paid plan period; a string says why neither."""
    if not payment.paid or payment.kind != "subscription" or payment.period_start is None:
        return "not a paid plan period"
    if not 0 < index < payment.months:
        return f"month {index} is outside this period of {payment.months} months"
    if index in payment.granted_months or index in payment.skipped_months:
        return f"month {index} was already settled"
    due = month_due(payment.period_start, index)
    if payment.stopped:
        return SubscriptionMonthSkipped(
            payment_key=payment.payment_key, month_index=index, reason="the payment was reversed"
        )
    if subscription.ended_at is not None and due > subscription.ended_at:
        return SubscriptionMonthSkipped(
            payment_key=payment.payment_key, month_index=index, reason="the subscription ended"
        )
    return SubscriptionMonthGranted(
        payment_key=payment.payment_key,
        month_index=index,
        credits=payment.credits_per_month,
        due_at=due,
    )


class Reclaim(msgspec.Struct, frozen=True, kw_only=True):
    credits: int  # owed back now
    months_stopped: int  # plan months that will not be granted


def reclaim_due(payment: PaymentState, *, plan_ended: bool = False) -> Reclaim | None:
    """What a reversed payment owes back now (see the module's clawback policy).

    `plan_ended`: the subscription was cancelled, so its months not granted by now never
    will be. A refund (pro rata, typically) pays for those first: it takes back only what
    it paid for that was granted, not the months the cancellation already took away."""
    if not payment.paid:
        return None  # nothing was granted; the reversal is applied when it is paid
    reversed_ = payment.refunded_amount + payment.disputed_amount
    if reversed_ <= 0:
        return None
    full = payment.amount <= 0 or reversed_ >= payment.amount
    target = payment.credits if full else payment.credits * reversed_ // payment.amount
    stop = 0
    if full and payment.kind == "subscription" and not payment.stopped:
        settled = len(payment.granted_months) + len(payment.skipped_months)
        stop = max(0, payment.months - settled)
    if full or (plan_ended and payment.kind == "subscription"):
        # Months that will never be granted were given back already.
        target -= payment.credits - payment.credits_granted
    owed = min(payment.credits_granted, max(0, target)) - payment.credits_reclaimed
    if owed <= 0 and stop == 0:
        return None
    return Reclaim(credits=max(0, owed), months_stopped=stop)


def reclaimed(payment: PaymentState, due: Reclaim, clawed: int, shortfall: int) -> PaymentReclaimed:
    return PaymentReclaimed(
        payment_key=payment.payment_key,
        credits=due.credits,
        clawed=clawed,
        shortfall=shortfall,
        months_stopped=due.months_stopped,
        user_id=payment.user_id,
    )


# --- the calendar of a plan period ------------------------------------------------------


def add_months(start: datetime, months: int) -> datetime:
    """The same day `months` later, clamped to the month's end (Jan 31 + 1: Feb 28/29)."""
    total = start.month - 1 + months
    year, month = start.year + total // 12, total % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def month_due(period_start: int, index: int) -> int:
    """When month `index` of a period that started at `period_start` is due (epoch s).

    Always counted from the period's start, never from the previous month, so clamping
    a short month never shifts the months after it."""
    start = datetime.fromtimestamp(period_start, UTC)
    return int(add_months(start, index).timestamp())


def month_span(period_start: int, index: int) -> str:
    """The month a grant covers, as an ISO interval of dates (for the ledger's period)."""
    start = datetime.fromtimestamp(period_start, UTC)
    first, last = add_months(start, index), add_months(start, index + 1)
    return f"{first.date().isoformat()}/{last.date().isoformat()}"
