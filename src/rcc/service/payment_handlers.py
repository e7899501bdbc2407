"""Payment handlers: Stripe's facts become payment, subscription and wallet events.

Each handler locks every stream it writes in one call (one lock order: no deadlocks),
decides with the pure functions of rcc.domain.payment, and stages a StripeEventReceived
first, so every Stripe event id is recorded exactly once. The annual plans' schedule
rows are written in the same transaction as the events that create or settle them.
The routing table is at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from rcc.domain import payment as payments
from rcc.domain import wallet as wallets
from rcc.domain.errors import Conflict, DomainError, NotFound
from rcc.domain.events import (
    CreditsClawedBack,
    Event,
    PaymentAliased,
    PaymentDisputed,
    PaymentFailed,
    PaymentHeld,
    PaymentPending,
    PaymentRefunded,
    PaymentRejected,
    PaymentSucceeded,
    StripeEventReceived,
    SubscriptionEnded,
    SubscriptionLinked,
    SubscriptionMonthGranted,
    SubscriptionPaymentHeld,
    TopupGranted,
    payment_stream,
    subscription_stream,
    user_stream,
    wallet_stream,
)
from rcc.domain.lots import LotPolicy, lifetime
from rcc.domain.payment import PaymentState, SubscriptionState
from rcc.domain.subscription_months import month_grant
from rcc.domain.user import UserState
from rcc.service import payment_commands as pc
from rcc.service.commands import Command
from rcc.service.org_payments import org_wallet
from rcc.store.lot_expiries import schedule_expiries
from rcc.store.unit_of_work import Head, UnitOfWork


class StripeOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a payment command did (the webhook's answer, reconcile's report line)."""

    outcome: str
    detail: str = ""
    payment_key: str | None = None
    granted_rcc: int = 0
    clawed_rcc: int = 0
    shortfall_rcc: int = 0


@dataclass
class _Writes:
    """The streams one command writes: their states as events are added, staged at the end."""

    uow: UnitOfWork
    heads: dict[str, Head]
    policy: LotPolicy = field(default_factory=LotPolicy)  # how long the grants' lots last
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    states: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    granted: int = 0
    clawed: int = 0
    shortfall: int = 0
    settled: list[str] = field(default_factory=list)  # payment keys paid now
    stopped: list[str] = field(default_factory=list)  # payment keys whose months stop

    @classmethod
    async def lock(cls, policy: LotPolicy, uow: UnitOfWork, streams: list[str | None]) -> _Writes:
        wanted = list(dict.fromkeys(s for s in streams if s))
        return cls(uow, await uow.lock(*wanted), policy=policy)

    def payment(self, key: str) -> PaymentState:
        stream = payment_stream(key)
        if stream not in self.states:
            self.states[stream] = self.heads[stream].as_state(PaymentState)
        state: PaymentState = self.states[stream]
        return state

    def subscription(self, subscription_id: str) -> SubscriptionState:
        stream = subscription_stream(subscription_id)
        if stream not in self.states:
            self.states[stream] = self.heads[stream].as_state(SubscriptionState)
        state: SubscriptionState = self.states[stream]
        return state

    def wallet(self, wallet_id: str) -> wallets.WalletState:
        stream = wallet_stream(wallet_id)
        if stream not in self.states:
            self.states[stream] = self.heads[stream].as_state(wallets.WalletState)
        state: wallets.WalletState = self.states[stream]
        return state

    def add_payment(self, key: str, events: list[Event]) -> None:
        self.states[payment_stream(key)] = payments.fold_payment(events, self.payment(key))
        self.events.setdefault(payment_stream(key), []).extend(events)

    def add_subscription(self, subscription_id: str, events: list[Event]) -> None:
        stream = subscription_stream(subscription_id)
        self.states[stream] = payments.fold_subscription(events, self.subscription(subscription_id))
        self.events.setdefault(stream, []).extend(events)

    def add_wallet(self, wallet_id: str, events: list[Event]) -> None:
        self.states[wallet_stream(wallet_id)] = wallets.fold(events, self.wallet(wallet_id))
        self.events.setdefault(wallet_stream(wallet_id), []).extend(events)

    async def stage(self, stream: str, received: StripeEventReceived | None) -> None:
        """Stage everything, the received event first (on `stream`), in a stable order."""
        if received is not None:
            self.events[stream] = [received, *self.events.get(stream, [])]
            self.events = {stream: self.events[stream]} | self.events
        for stream_id, events in self.events.items():
            head = self.heads.get(stream_id, Head(0, {}))
            self.uow.stage(stream_id, head.version, events, self.states.get(stream_id))
            if stream_id.startswith("wallet-"):
                wallet_id = stream_id.removeprefix("wallet-")
                await schedule_expiries(self.uow.conn, wallet_id, self.wallet(wallet_id), events)

    def outcome(self, outcome: str, detail: str = "", key: str | None = None) -> StripeOutcome:
        return StripeOutcome(
            outcome=outcome,
            detail=detail,
            payment_key=key,
            granted_rcc=self.granted,
            clawed_rcc=self.clawed,
            shortfall_rcc=self.shortfall,
        )


def _received(cmd: pc.StripeCommand, outcome: str, detail: str = "") -> StripeEventReceived:
    return StripeEventReceived(
        event_id=cmd.event_id,
        event_type=cmd.event_type,
        object_id=cmd.object_id,
        created=cmd.created,
        outcome=outcome,
        detail=detail,
    )


async def _wallet_of(uow: UnitOfWork, user_id: str | None, org_id: str | None = None) -> str | None:
    """The wallet of a registered user (None: no such user), or of the org it bought for."""
    if org_id:  # h5: an organisation's purchase credits the org's wallet
        return await org_wallet(uow, org_id) if user_id else None
    if not user_id:
        return None
    user = (await uow.peek(user_stream(user_id))).as_state(UserState)
    return user.wallet_id if user.registered else None


def _grant(w: _Writes, key: str, event: Event) -> None:
    """The wallet's ledger line for a payment event that credits something."""
    payment = w.payment(key)
    if payment.wallet_id is None:
        return
    wallet = w.wallet(payment.wallet_id)
    match event:
        case PaymentSucceeded() if event.kind == "topup":
            granted = wallets.grant(
                wallet, TopupGranted, event.credits, w.now,
                lifetime=lifetime(w.policy, "topup"), ref=key, pack=event.product,
            )  # fmt: skip
        case SubscriptionMonthGranted():
            period = payments.month_span(payment.period_start or 0, event.month_index)
            granted = month_grant(
                wallet, event.credits, w.now, lifetime=lifetime(w.policy, "subscription"),
                rollover_cap=w.policy.subscription_rollover_rcc, ref=key, period=period,
            )  # fmt: skip
        case _:
            return
    w.add_wallet(payment.wallet_id, granted)
    w.granted += event.credits


def _reclaim(w: _Writes, key: str) -> None:
    """Take back what a reversed payment owes now (REFUND_CLAWBACK, never below zero)."""
    payment = w.payment(key)
    due = payments.reclaim_due(payment, plan_ended=_plan_ended(w, payment))
    if due is None:
        return
    clawed = shortfall = 0
    if due.credits > 0 and payment.wallet_id is not None:
        clawback = wallets.claw_back(w.wallet(payment.wallet_id), due.credits, key, w.now)
        w.add_wallet(payment.wallet_id, clawback)
        taken = clawback[-1]
        assert isinstance(taken, CreditsClawedBack)
        clawed, shortfall = taken.amount, taken.shortfall
    w.add_payment(key, [payments.reclaimed(payment, due, clawed, shortfall)])
    w.clawed += clawed
    w.shortfall += shortfall
    if due.months_stopped:
        w.stopped.append(key)


def _plan_ended(w: _Writes, payment: PaymentState) -> bool:
    """Whether the payment's subscription has ended (its stream is locked by the caller)."""
    sub_id = payment.subscription_id
    if not sub_id or subscription_stream(sub_id) not in w.heads:
        return False
    return w.subscription(sub_id).ended_at is not None


def _settle(w: _Writes, paid: PaymentSucceeded) -> None:
    """Pay a payment: its events, the wallet's grant, a reversal that came first."""
    key = paid.payment_key
    for event in payments.settle(paid):
        w.add_payment(key, [event])
        _grant(w, key, event)
    w.settled.append(key)
    _reclaim(w, key)


async def _write_schedule(w: _Writes) -> None:
    """Schedule the later months of every plan period paid now; cancel stopped ones."""
    rows = []
    for key in w.settled:
        payment = w.payment(key)
        if payment.months <= 1 or payment.stopped or payment.period_start is None:
            continue
        assert payment.subscription_id is not None and payment.user_id is not None
        ended = None
        if subscription_stream(payment.subscription_id) in w.heads:
            ended = w.subscription(payment.subscription_id).ended_at
        for index in range(1, payment.months):
            due = payments.month_due(payment.period_start, index)
            if ended is not None and due > ended:
                continue
            rows.append(
                (key, index, payment.subscription_id, payment.period_start, due,
                 payment.user_id, payment.credits_per_month)
            )  # fmt: skip
    if rows:
        await w.uow.conn.execute(
            """INSERT INTO subscription_schedule
                      (payment_key, month_index, subscription_id, period_start, due_at,
                       user_id, credits)
               SELECT k, i, s, to_timestamp(p), to_timestamp(d), u, c
                 FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[],
                             $6::text[], $7::bigint[]) AS r(k, i, s, p, d, u, c)
               ON CONFLICT DO NOTHING""",
            *[list(column) for column in zip(*rows, strict=True)],
        )
    if w.stopped:
        await w.uow.conn.execute(
            """UPDATE subscription_schedule SET cancelled_at = now()
                WHERE payment_key = ANY($1::text[]) AND granted_at IS NULL
                  AND cancelled_at IS NULL""",
            w.stopped,
        )


# --- handlers ---------------------------------------------------------------------------


async def record_payment(cmd: pc.RecordPayment, uow: UnitOfWork) -> StripeOutcome | DomainError:
    """A pack's checkout session or a plan's invoice: paid, pending or failed."""
    facts = cmd.facts
    key = facts.payment_key
    sub_id = facts.subscription_id
    linked = None
    if sub_id:
        linked = (await uow.peek(subscription_stream(sub_id))).as_state(SubscriptionState).user_id
    user_id = facts.user_id or linked
    wallet_id = await _wallet_of(uow, user_id, facts.org_id)
    w = await _Writes.lock(
        cmd.lots,
        uow,
        [
            payment_stream(key),
            subscription_stream(sub_id) if sub_id else None,
            wallet_stream(wallet_id) if wallet_id else None,
        ],
    )
    if sub_id and not facts.user_id and w.subscription(sub_id).user_id != linked:
        return Conflict(detail="the subscription was linked meanwhile; try again")
    payment = w.payment(key)
    outcome, detail = _decide_payment(w, cmd, payment, user_id, wallet_id)
    await _write_schedule(w)
    await w.stage(payment_stream(key), _received(cmd, outcome, detail))
    return w.outcome(outcome, detail, key)


def _decide_payment(
    w: _Writes,
    cmd: pc.RecordPayment,
    payment: PaymentState,
    user_id: str | None,
    wallet_id: str | None,
) -> tuple[str, str]:
    facts = cmd.facts
    key = facts.payment_key
    if payment.status in payments.SETTLED:
        return "ignored", f"the payment is already {payment.status}"
    if cmd.status == "pending":
        w.add_payment(key, [payments.fact(PaymentPending, facts, user_id, wallet_id)])
        return "pending", "waiting for the payment to settle"
    if cmd.status == "failed":
        w.add_payment(
            key, [payments.fact(PaymentFailed, facts, user_id, wallet_id, reason=cmd.reason)]
        )
        return "failed", cmd.reason
    if reason := payments.rejection(facts):
        w.add_payment(
            key, [payments.fact(PaymentRejected, facts, user_id, wallet_id, reason=reason)]
        )
        return "rejected", reason
    if wallet_id is None or user_id is None:
        if facts.offer.kind == "subscription" and facts.subscription_id and not user_id:
            w.add_payment(key, [payments.fact(PaymentHeld, facts, None, None)])
            held = SubscriptionPaymentHeld(subscription_id=facts.subscription_id, payment_key=key)
            w.add_subscription(facts.subscription_id, [held])
            return "held", "no user is known for this subscription yet"
        reason = f"unknown user {user_id!r}"
        w.add_payment(key, [payments.fact(PaymentRejected, facts, user_id, None, reason=reason)])
        return "rejected", reason
    _settle(w, payments.fact(PaymentSucceeded, facts, user_id, wallet_id))
    sub_id = facts.subscription_id
    if sub_id and facts.offer.kind == "subscription":
        sub = w.subscription(sub_id)
        if sub.user_id is None and not sub.held:
            linked = SubscriptionLinked(
                subscription_id=sub_id, user_id=user_id, plan=facts.offer.product
            )
            w.add_subscription(sub_id, [linked])
    return "granted", f"{w.granted} RCC"


async def link_subscription(
    cmd: pc.LinkSubscription, uow: UnitOfWork
) -> StripeOutcome | DomainError:
    """Checkout made this subscription for this user: link it, release held invoices."""
    sub_id = cmd.subscription_id
    held = (await uow.peek(subscription_stream(sub_id))).as_state(SubscriptionState).held
    wallet_id = await _wallet_of(uow, cmd.user_id, cmd.org_id)
    w = await _Writes.lock(
        cmd.lots,
        uow,
        [
            subscription_stream(sub_id),
            *[payment_stream(k) for k in held],
            wallet_stream(wallet_id) if wallet_id else None,
        ],
    )
    sub = w.subscription(sub_id)
    if sub.held != held:
        return Conflict(detail="a payment of this subscription was held meanwhile; try again")
    if wallet_id is None or cmd.user_id is None:
        outcome, detail = "rejected", f"unknown user {cmd.user_id!r}"
    elif sub.user_id is not None:
        outcome = "ignored"
        detail = "already linked" + ("" if sub.user_id == cmd.user_id else " to another user")
    else:
        linked = SubscriptionLinked(subscription_id=sub_id, user_id=cmd.user_id, plan=cmd.plan)
        w.add_subscription(sub_id, [linked])
        for key in held:
            _settle(w, payments.succeeded(w.payment(key), cmd.user_id, wallet_id))
        outcome, detail = "linked", f"{len(held)} held payment(s) credited"
    await _write_schedule(w)
    await w.stage(subscription_stream(sub_id), _received(cmd, outcome, detail))
    return w.outcome(outcome, detail)


async def link_invoice_payment(
    cmd: pc.LinkInvoicePayment, uow: UnitOfWork
) -> StripeOutcome | DomainError:
    """An invoice paid through an InvoicePayment (current API): its PaymentIntent and
    charge become aliases of the invoice's payment, so refunds and disputes, which name
    only those, reach it. A key that is a payment of its own is left alone."""
    key = cmd.invoice_id
    w = await _Writes.lock(cmd.lots, uow, [payment_stream(key), *map(payment_stream, cmd.aliases)])
    linked: list[str] = []
    for alias in cmd.aliases:
        state = w.payment(alias)
        if state.alias_of is None and not state.status and not state.refunded_amount:
            aliased = PaymentAliased(
                alias=alias, payment_key=key, invoice_payment_id=cmd.invoice_payment_id
            )
            w.add_payment(alias, [aliased])
            linked.append(alias)
    outcome = "linked" if linked else "ignored"
    detail = f"{', '.join(linked) or 'nothing new'} linked to invoice {key}"
    await w.stage(payment_stream(key), _received(cmd, outcome, detail))
    return w.outcome(outcome, detail, key)


async def _payment_named(uow: UnitOfWork, cmd: pc.ReverseCharge) -> str:
    """The key of the payment a refund or dispute concerns: its PaymentIntent's, or the
    invoice's that PaymentIntent (or charge) was linked to by invoice_payment.paid."""
    for named in (cmd.payment_key, cmd.charge_id):
        if named:
            state = (await uow.peek(payment_stream(named))).as_state(PaymentState)
            if state.alias_of:
                return state.alias_of
    return cmd.payment_key


async def reverse_charge(cmd: pc.ReverseCharge, uow: UnitOfWork) -> StripeOutcome | DomainError:
    """A refund or a dispute: recorded; the credits the payment bought are reclaimed."""
    key = await _payment_named(uow, cmd)
    peeked = (await uow.peek(payment_stream(key))).as_state(PaymentState)
    known, sub_id = peeked.wallet_id, peeked.subscription_id
    w = await _Writes.lock(
        cmd.lots,
        uow,
        [
            payment_stream(key),
            wallet_stream(known) if known else None,
            subscription_stream(sub_id) if sub_id else None,  # has the plan ended?
        ],
    )
    payment = w.payment(key)
    if payment.wallet_id != known:
        return Conflict(detail="the payment changed meanwhile; try again")
    fact: Event
    if cmd.kind == "dispute":
        fact = PaymentDisputed(
            payment_key=key,
            charge_id=cmd.charge_id,
            dispute_id=cmd.dispute_id,
            amount=cmd.amount,
            currency=cmd.currency,
            reason=cmd.reason,
        )
    else:
        fact = PaymentRefunded(
            payment_key=key,
            charge_id=cmd.charge_id,
            amount=cmd.amount,
            currency=cmd.currency,
            reason=cmd.reason,
        )
    w.add_payment(key, [fact])
    _reclaim(w, key)
    await _write_schedule(w)
    outcome = "disputed" if cmd.kind == "dispute" else "refunded"
    detail = f"clawed back {w.clawed} RCC, shortfall {w.shortfall} RCC"
    if not payment.paid:
        detail = f"the payment is {payment.status or 'unknown'} here: reclaimed when it is paid"
    await w.stage(payment_stream(key), _received(cmd, outcome, detail))
    return w.outcome(outcome, detail, key)


async def end_subscription(cmd: pc.EndSubscription, uow: UnitOfWork) -> StripeOutcome | DomainError:
    """The subscription ended: months due after its end are not granted."""
    sub_id = cmd.subscription_id
    w = await _Writes.lock(cmd.lots, uow, [subscription_stream(sub_id)])
    sub = w.subscription(sub_id)
    if sub.ended_at is not None:
        outcome, detail = "ignored", "already ended"
    else:
        cancelled = await uow.conn.fetchval(
            """WITH cancelled AS (
                   UPDATE subscription_schedule SET cancelled_at = now()
                    WHERE subscription_id = $1 AND granted_at IS NULL AND cancelled_at IS NULL
                      AND due_at > to_timestamp($2)
                RETURNING 1)
               SELECT count(*) FROM cancelled""",
            sub_id,
            cmd.ended_at,
        )
        ended = SubscriptionEnded(
            subscription_id=sub_id,
            ended_at=cmd.ended_at,
            user_id=sub.user_id,
            months_cancelled=int(cancelled),
        )
        w.add_subscription(sub_id, [ended])
        outcome, detail = "ended", f"{cancelled} scheduled month(s) cancelled"
    await w.stage(subscription_stream(sub_id), _received(cmd, outcome, detail))
    return w.outcome(outcome, detail)


async def note_stripe_event(
    cmd: pc.NoteStripeEvent, uow: UnitOfWork
) -> StripeOutcome | DomainError:
    """Any other event: recorded on its own stream, acknowledged, nothing else."""
    stream = f"stripe-{cmd.event_id}"
    w = await _Writes.lock(cmd.lots, uow, [stream])
    await w.stage(stream, _received(cmd, "ignored", cmd.detail))
    return w.outcome("ignored", cmd.detail)


async def grant_scheduled_month(
    cmd: pc.GrantScheduledMonth, uow: UnitOfWork
) -> StripeOutcome | DomainError:
    """Credit one due month of a paid plan period, or skip it if the plan ended."""
    key = cmd.payment_key
    peeked = (await uow.peek(payment_stream(key))).as_state(PaymentState)
    if not peeked.paid or not peeked.subscription_id or not peeked.wallet_id:
        return NotFound(detail=f"no paid plan period {key!r}")
    w = await _Writes.lock(
        cmd.lots,
        uow,
        [
            payment_stream(key),
            subscription_stream(peeked.subscription_id),
            wallet_stream(peeked.wallet_id),
        ],
    )
    decision = payments.month_decision(
        w.payment(key), w.subscription(peeked.subscription_id), cmd.month_index
    )
    if isinstance(decision, str):
        return Conflict(detail=decision)
    w.add_payment(key, [decision])
    granted = isinstance(decision, SubscriptionMonthGranted)
    if granted:
        _grant(w, key, decision)
        _reclaim(w, key)  # a partial refund is taken from later months too
    await _write_schedule(w)
    await uow.conn.execute(
        f"""UPDATE subscription_schedule SET {"granted_at" if granted else "cancelled_at"} = now()
             WHERE payment_key = $1 AND month_index = $2""",
        key,
        cmd.month_index,
    )
    await w.stage(payment_stream(key), None)
    return w.outcome("granted" if granted else "skipped", getattr(decision, "reason", ""), key)


PAYMENT_HANDLERS: dict[type[Command], Any] = {
    pc.RecordPayment: record_payment,
    pc.LinkSubscription: link_subscription,
    pc.ReverseCharge: reverse_charge,
    pc.LinkInvoicePayment: link_invoice_payment,
    pc.EndSubscription: end_subscription,
    pc.NoteStripeEvent: note_stripe_event,
    pc.GrantScheduledMonth: grant_scheduled_month,
}
