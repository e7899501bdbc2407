"""`AutoTopupCharger`: one off-session PaymentIntent per crossing, at Stripe.

Each due charge (written once per crossing by the billing follower) is sent with the
Stripe idempotency key `rcc-autotopup:<crossing>`: a charger that dies after Stripe
took it and before it recorded the answer sends it again after the lease and Stripe
answers the same PaymentIntent, so a crossing never pays twice. The credit is not made
here: Stripe's payment_intent.succeeded webhook brings it through the inbox, once.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import msgspec

from rcc.adapters.stripe_api import stripe_client
from rcc.adapters.stripe_autotopup import Declined, charge_off_session
from rcc.autotopup import store
from rcc.autotopup.commands import RecordChargeOutcome
from rcc.autotopup.stripe_events import AUTO_TOPUP_KEY
from rcc.config import Settings
from rcc.domain.org import ORG_METADATA
from rcc.service.blocks import account_block_of
from rcc.service.stripe_inbox import execute_retrying
from rcc.service.ticking import TickingWorker

log = logging.getLogger("rcc.autotopup")
LEASE_S = 60.0


def charge_key(crossing: str) -> str:
    """The Stripe idempotency key of a crossing's PaymentIntent."""
    return f"rcc-autotopup:{crossing}"


def owner_metadata(charge: store.Charge) -> dict[str, str]:
    """Whose wallet the PaymentIntent credits: the user's, or the org's with the admin
    who turned auto top-up on recorded as the buyer (as an org's Checkout does)."""
    if charge.owner_kind == "org":
        return {"rcc_user_id": charge.buyer_id or "", ORG_METADATA: charge.user_id}
    return {"rcc_user_id": charge.user_id}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    crossing: str
    payment_intent: str | None
    declined: str | None


class AutoTopupCharger(TickingWorker):
    """Charges due crossings: `tick()` once, or `run()` until `stop()`."""

    name = "auto top-up"

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        interval_s: float = 1.0,
        batch_size: int = 20,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, batch_size=batch_size, stop_event=stop_event)
        self.pool = pool
        self.settings = settings

    async def tick(self) -> list[Outcome]:
        """Send every due charge (none while Stripe is not configured)."""
        if not self.settings.stripe_secret_key:
            return []
        async with self.pool.acquire() as conn:
            due = await store.claim_due(conn, self.batch_size, LEASE_S)
        return [await self._charge(charge) for charge in due]

    async def _charge(self, charge: store.Charge) -> Outcome:
        if refused := await account_block_of(self.pool, charge.owner_kind, charge.user_id):
            # A blocked account buys nothing (as its Checkout is refused): reported like
            # a charge without a saved card, a decline with the reason, Stripe untouched.
            return await self._record(charge, None, f"account blocked: {refused.reason}")
        pack = self.settings.catalog.pack(charge.pack)
        if pack is None or not charge.customer_id or not charge.payment_method:
            why = "no saved card" if pack is not None else f"unknown pack {charge.pack!r}"
            return await self._record(charge, None, why)
        params = {
            "amount": pack.price,
            "currency": pack.currency,
            "customer": charge.customer_id,
            "payment_method": charge.payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": {
                **owner_metadata(charge),
                "rcc_pack": pack.id,
                AUTO_TOPUP_KEY: charge.crossing,
            },
        }
        settings = self.settings
        async with stripe_client(settings.stripe_secret_key, settings.stripe_api_base) as client:
            answer = await charge_off_session(client, params, charge_key(charge.crossing))
        if isinstance(answer, Declined):
            return await self._record(charge, answer.payment_intent, answer.reason)
        return await self._record(charge, answer.payment_intent, None)

    async def _record(
        self, charge: store.Charge, payment_intent: str | None, declined: str | None
    ) -> Outcome:
        command = RecordChargeOutcome(
            user_id=charge.user_id,
            crossing=charge.crossing,
            payment_intent=payment_intent,
            declined=declined,
        )
        await execute_retrying(self.pool, command, idempotency_key=f"autotopup:{charge.crossing}")
        if declined:
            log.warning("auto top-up of %s declined: %s", charge.user_id, declined)
        return Outcome(crossing=charge.crossing, payment_intent=payment_intent, declined=declined)
