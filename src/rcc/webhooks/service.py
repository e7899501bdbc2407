"""The billing-state follower (with the auto top-up trigger), the webhook outbox, the
webhook sender and the auto top-up charger, run together (in `rcc serve`, or alone as
`rcc webhooks`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from rcc.autotopup.charger import AutoTopupCharger
from rcc.autotopup.trigger import trigger_crossings
from rcc.background import running
from rcc.billing.follower import BillingFollower, policy_thresholds
from rcc.bootstrap import open_pool
from rcc.config import Settings
from rcc.follower.worker import FollowerWorker
from rcc.webhooks.guard import AddressGuard
from rcc.webhooks.outbox import WebhookOutbox
from rcc.webhooks.sender import WebhookSender


class NotifyWorker:
    """Follows the log (billing states, then the outbox) and sends the outbox."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        guard: AddressGuard,
        *,
        poll_interval: float = 1.0,
        send_interval: float = 1.0,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.stop_event = stop_event or asyncio.Event()
        self.follower = FollowerWorker(
            pool,
            [
                BillingFollower(
                    policy_thresholds(settings.low_balance_rcc), watchers=[trigger_crossings]
                ),
                WebhookOutbox(),
            ],
            kind="subscriber",
            label="billing+webhooks",
            poll_interval=poll_interval,
            stop_event=self.stop_event,
        )
        self.sender = WebhookSender(
            pool,
            guard,
            schedule_s=settings.webhook_retry_schedule_s,  # below the policy
            timeout_s=settings.webhook_timeout_s,
            interval_s=send_interval,
            stop_event=self.stop_event,
        )

        self.charger = AutoTopupCharger(
            pool, settings, interval_s=send_interval, stop_event=self.stop_event
        )

    def stop(self) -> None:
        """Stop following and sending after the work in hand."""
        self.follower.stop()
        self.sender.stop()
        self.charger.stop()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def run(self) -> None:
        """Follow and send until stopped."""
        await asyncio.gather(self.follower.run(), self.sender.run(), self.charger.run())


@contextlib.asynccontextmanager
async def running_notifications(
    settings: Settings, guard: AddressGuard
) -> AsyncIterator[NotifyWorker]:
    """The billing states and webhooks kept going in the background for the block."""
    async with running(
        settings,
        lambda pool: NotifyWorker(pool, settings, guard),
        pool_size=3,
        name="rcc-notifications",
        direct=True,  # LISTEN
    ) as worker:
        yield worker


async def run_alone(settings: Settings, guard: AddressGuard, stop_event: asyncio.Event) -> None:
    """`rcc webhooks`: the billing states and webhooks as their own process."""
    pool = await open_pool(settings, max_size=3, direct=True)  # LISTEN
    try:
        await NotifyWorker(pool, settings, guard, stop_event=stop_event).run()
    finally:
        await pool.close()
