"""Auto top-up commands and their handlers: the user's choice, the card a Checkout
saved, and what Stripe answered for a crossing's charge (three declines in a row turn
auto top-up off)."""

from __future__ import annotations

from typing import Any

from rcc.autotopup import store
from rcc.domain.errors import DomainError
from rcc.domain.events import (
    AutoTopupCardSaved,
    AutoTopupCharged,
    AutoTopupConfigured,
    AutoTopupDeclined,
    autotopup_stream,
)
from rcc.service.commands import Command
from rcc.service.payment_commands import StripeCommand
from rcc.store.unit_of_work import UnitOfWork


class ConfigureAutoTopup(Command, frozen=True, kw_only=True):
    user_id: str  # the wallet's owner: a user, or an org (owner_kind "org")
    enabled: bool
    threshold_rcc: int
    pack: str
    owner_kind: str = "user"
    actor: str = ""  # an org's: the owner or admin, recorded as the buyer of its charges


class SaveCard(StripeCommand, frozen=True, kw_only=True):
    """payment_intent.succeeded of a Checkout that saved the card (setup_future_usage)."""

    user_id: str
    customer_id: str
    payment_method: str


class RecordChargeOutcome(Command, frozen=True, kw_only=True):
    user_id: str
    crossing: str
    payment_intent: str | None = None
    declined: str | None = None  # the reason, when Stripe declined


class RecordLaterDecline(StripeCommand, frozen=True, kw_only=True):
    """payment_intent.payment_failed of an auto top-up PaymentIntent (e.g. a bank that
    wants the customer present after all): Stripe's word, later than the charger's."""

    user_id: str  # the wallet's owner: a user, or an organisation
    crossing: str
    payment_intent: str
    reason: str


async def configure_auto_topup(
    cmd: ConfigureAutoTopup, uow: UnitOfWork
) -> dict[str, Any] | DomainError:
    """Turn auto top-up on or off (the route checked the pack and the threshold)."""
    stream = autotopup_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    event = AutoTopupConfigured(
        user_id=cmd.user_id,
        enabled=cmd.enabled,
        threshold_rcc=cmd.threshold_rcc,
        pack=cmd.pack,
        owner_kind=cmd.owner_kind,
        actor=cmd.actor,
    )
    uow.stage(stream, head.version, [event])
    buyer = cmd.actor if cmd.owner_kind == "org" else None
    await store.configure(
        uow.conn, cmd.user_id, cmd.enabled, cmd.threshold_rcc, cmd.pack, cmd.owner_kind, buyer
    )
    return {"enabled": cmd.enabled, "threshold_rcc": cmd.threshold_rcc, "pack": cmd.pack}


async def save_card(cmd: SaveCard, uow: UnitOfWork) -> dict[str, Any]:
    """Keep the customer and card a Checkout saved for off-session use."""
    stream = autotopup_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    event = AutoTopupCardSaved(
        user_id=cmd.user_id, customer_id=cmd.customer_id, payment_method=cmd.payment_method
    )
    uow.stage(stream, head.version, [event])
    await store.save_card(uow.conn, cmd.user_id, cmd.customer_id, cmd.payment_method)
    return {"outcome": "card_saved"}


async def record_charge_outcome(cmd: RecordChargeOutcome, uow: UnitOfWork) -> dict[str, Any]:
    """What Stripe answered for a crossing's PaymentIntent; the third decline in a row
    turns auto top-up off. The credit itself comes with Stripe's webhook."""
    if cmd.declined is not None:
        return await _count_decline(
            uow, cmd.user_id, cmd.crossing, cmd.payment_intent, cmd.declined
        )
    stream = autotopup_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    if not await store.charge_sent(uow.conn, cmd.crossing, cmd.payment_intent):
        # Stripe's payment_intent.payment_failed came first and was counted already.
        return {"outcome": "declined_already"}
    charged = AutoTopupCharged(
        user_id=cmd.user_id, crossing=cmd.crossing, payment_intent=cmd.payment_intent or ""
    )
    uow.stage(stream, head.version, [charged])
    return {"outcome": "charged"}


async def record_later_decline(cmd: RecordLaterDecline, uow: UnitOfWork) -> dict[str, Any]:
    """payment_intent.payment_failed of a crossing's PaymentIntent: counted like a decline
    the charger saw at once, and only once per crossing whichever reports it first."""
    return await _count_decline(uow, cmd.user_id, cmd.crossing, cmd.payment_intent, cmd.reason)


async def _count_decline(
    uow: UnitOfWork, owner_id: str, crossing: str, payment_intent: str | None, reason: str
) -> dict[str, Any]:
    """Mark the crossing's charge declined and count it; a charge already declined (the
    same PaymentIntent reported twice: by the charger and by a webhook, or by two
    webhook events) changes nothing. The owner's stream lock orders the two reports."""
    stream = autotopup_stream(owner_id)
    head = (await uow.lock(stream))[stream]
    if not await store.charge_declined(uow.conn, crossing, payment_intent, reason):
        return {"outcome": "declined_already"}
    in_a_row = await store.declines_in_a_row(uow.conn, owner_id)
    disabled = in_a_row >= store.MAX_IN_A_ROW
    if disabled:
        await store.disable(uow.conn, owner_id)
    declined = AutoTopupDeclined(
        user_id=owner_id,
        crossing=crossing,
        reason=reason,
        in_a_row=in_a_row,
        disabled=disabled,
        payment_intent=payment_intent or "",
    )
    uow.stage(stream, head.version, [declined])
    return {"outcome": "declined", "in_a_row": in_a_row, "disabled": disabled}


AUTOTOPUP_HANDLERS: dict[type[Command], Any] = {
    ConfigureAutoTopup: configure_auto_topup,
    SaveCard: save_card,
    RecordChargeOutcome: record_charge_outcome,
    RecordLaterDecline: record_later_decline,
}
