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
    user_id: str
    enabled: bool
    threshold_rcc: int
    pack: str


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


async def configure_auto_topup(
    cmd: ConfigureAutoTopup, uow: UnitOfWork
) -> dict[str, Any] | DomainError:
    """Turn auto top-up on or off (the route checked the pack and the threshold)."""
    stream = autotopup_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    event = AutoTopupConfigured(
        user_id=cmd.user_id, enabled=cmd.enabled, threshold_rcc=cmd.threshold_rcc, pack=cmd.pack
    )
    uow.stage(stream, head.version, [event])
    await store.configure(uow.conn, cmd.user_id, cmd.enabled, cmd.threshold_rcc, cmd.pack)
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
    stream = autotopup_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    if cmd.declined is None:
        await store.finish_charge(uow.conn, cmd.crossing, "sent", cmd.payment_intent, None)
        charged = AutoTopupCharged(
            user_id=cmd.user_id, crossing=cmd.crossing, payment_intent=cmd.payment_intent or ""
        )
        uow.stage(stream, head.version, [charged])
        return {"outcome": "charged"}
    await store.finish_charge(uow.conn, cmd.crossing, "declined", cmd.payment_intent, cmd.declined)
    in_a_row = await store.declines_in_a_row(uow.conn, cmd.user_id)
    disabled = in_a_row >= store.MAX_IN_A_ROW
    if disabled:
        await store.disable(uow.conn, cmd.user_id)
    declined = AutoTopupDeclined(
        user_id=cmd.user_id,
        crossing=cmd.crossing,
        reason=cmd.declined,
        in_a_row=in_a_row,
        disabled=disabled,
    )
    uow.stage(stream, head.version, [declined])
    return {"outcome": "declined", "in_a_row": in_a_row, "disabled": disabled}


AUTOTOPUP_HANDLERS: dict[type[Command], Any] = {
    ConfigureAutoTopup: configure_auto_topup,
    SaveCard: save_card,
    RecordChargeOutcome: record_charge_outcome,
}
