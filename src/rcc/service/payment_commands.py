"""Payment commands: one per kind of Stripe fact, plus the scheduler's monthly grant.

Each Stripe command names the Stripe event it comes from; it runs under the idempotency
key `stripe:<event id>`, so an event id takes effect at most once. A command holds only
what the event's object says (never delivery details such as `pending_webhooks`), so a
redelivery, or the same event listed by the events API, is the very same command.
"""

from __future__ import annotations

from rcc.domain.lots import LotPolicy
from rcc.domain.payment import PaymentFacts
from rcc.service.commands import Command


class StripeCommand(Command, frozen=True, kw_only=True):
    event_id: str
    event_type: str
    created: int = 0
    object_id: str = ""
    lots: LotPolicy = LotPolicy()  # how long granted credits last (settings.lots)


class RecordPayment(StripeCommand, frozen=True, kw_only=True):
    """A checkout session (pack) or an invoice (plan) was paid, is pending, or failed."""

    status: str  # "paid", "pending" or "failed"
    facts: PaymentFacts
    reason: str = ""  # why it failed


class LinkSubscription(StripeCommand, frozen=True, kw_only=True):
    """Checkout created a subscription for this user (checkout.session.completed)."""

    subscription_id: str
    user_id: str | None
    plan: str = ""
    org_id: str | None = None  # h5: bought for this organisation's wallet


class ReverseCharge(StripeCommand, frozen=True, kw_only=True):
    """charge.refunded (amount: refunded so far) or charge.dispute.created (disputed)."""

    kind: str  # "refund" or "dispute"
    payment_key: str
    charge_id: str = ""
    dispute_id: str = ""
    amount: int
    currency: str = ""
    reason: str = ""


class LinkInvoicePayment(StripeCommand, frozen=True, kw_only=True):
    """invoice_payment.paid (API 2025-03-31 and later): the invoice's payment key (its id)
    is what later refunds and disputes naming `aliases` (PaymentIntent, charge) concern."""

    invoice_id: str
    aliases: list[str]
    invoice_payment_id: str = ""


class EndSubscription(StripeCommand, frozen=True, kw_only=True):
    """customer.subscription.deleted: no month due after `ended_at` is granted."""

    subscription_id: str
    ended_at: int


class NoteStripeEvent(StripeCommand, frozen=True, kw_only=True):
    """Any other event: acknowledged and recorded for the audit, nothing else."""

    detail: str = ""


class GrantScheduledMonth(Command, frozen=True, kw_only=True):
    """Credit month `month_index` of a paid plan period (the scheduler's command)."""

    payment_key: str
    month_index: int
    lots: LotPolicy = LotPolicy()
