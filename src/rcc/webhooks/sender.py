"""`WebhookSender`: delivers the outbox at least once, signed per Standard Webhooks.

Each tick queues the lots about to expire (credits.expiring), claims the due
deliveries (a lease moves their next attempt ahead first, so a sender killed mid-way
leaves them due again: at least once, never lost) and POSTs each, signed with the
`standardwebhooks` package: headers `webhook-id` (the message id, the same on every
attempt), `webhook-timestamp` and `webhook-signature`. A 2xx delivers it; anything else
is retried after the next delay of the schedule (the `webhooks.retry_schedule_s`
policy, read on every tick: exponential, about a day in all by default), then it is
dead (the dead-letter list) until an admin redelivers it.

The endpoint's address is checked again before every attempt and by the resolver on
connecting; 307/308 redirects are followed (at most MAX_REDIRECTS), each hop checked
the same way; other redirects are failures (a POST must not turn into a GET).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiohttp
import asyncpg
import msgspec
from standardwebhooks import Webhook
from yarl import URL

from rcc.policy.schedules import retry_schedule_s
from rcc.service.ticking import TickingWorker
from rcc.webhooks import store
from rcc.webhooks.guard import AddressGuard, UnsafeUrl
from rcc.webhooks.messages import expiring_notice

log = logging.getLogger("rcc.webhooks")

MAX_REDIRECTS = 5
FOLLOWED = frozenset({307, 308})
Clock = Callable[[], datetime]


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    message_id: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None


class WebhookSender(TickingWorker):
    """Sends due deliveries: `tick()` once, or `run()` until `stop()`."""

    name = "webhook sender"

    def __init__(
        self,
        pool: asyncpg.Pool,
        guard: AddressGuard,
        *,
        schedule_s: Sequence[float] = (),  # RCC_WEBHOOK_RETRY_SCHEDULE_S: below the policy
        lease_s: float = 0.0,
        timeout_s: float = 10.0,
        interval_s: float = 1.0,
        batch_size: int = 50,
        clock: Clock = lambda: datetime.now(UTC),
        stop_event: asyncio.Event | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, batch_size=batch_size, stop_event=stop_event)
        self.pool = pool
        self.guard = guard
        self.schedule_s = tuple(schedule_s)
        self.lease_s = max(lease_s, 2 * timeout_s)  # outlives any attempt (timeout_s at most)
        self.timeout_s = timeout_s
        self.clock = clock

    async def tick(self) -> list[Attempt]:
        """Queue expiring-lot notices, then make one attempt at each due delivery."""
        await self.queue_expiring()
        async with self.pool.acquire() as conn:
            claimed = await store.claim_due(conn, self.batch_size, self.lease_s)
        if not claimed:
            return []
        connector = aiohttp.TCPConnector(
            resolver=self.guard.resolver(), use_dns_cache=False, force_close=True
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            attempts = await asyncio.gather(*(self._attempt(http, c) for c in claimed))
        async with self.pool.acquire() as conn:
            schedule = await retry_schedule_s(conn, self.schedule_s)
            for claim, attempt in zip(claimed, attempts, strict=True):
                await self._record(conn, claim, attempt, schedule)
        return list(attempts)

    async def queue_expiring(self) -> int:
        """Queue credits.expiring once for each lot within a week of its expiry."""
        now = self.clock()
        queued = 0
        async with self.pool.acquire() as conn:
            for wallet, lot, expires_at, remaining in await store.expiring_lots(
                conn, now, self.batch_size
            ):
                async with conn.transaction():
                    notice = expiring_notice(wallet, lot, expires_at, remaining, now)
                    queued += await store.enqueue(conn, [notice])
                    await store.mark_expiring_noticed(conn, wallet, lot)
        return queued

    async def _attempt(self, http: aiohttp.ClientSession, claim: store.Claimed) -> Attempt:
        """POST one delivery, following 307/308 redirects, each hop checked; all hops
        together within `timeout_s`."""
        body = claim.payload.encode()
        headers = _signed_headers(claim, self.clock())
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._post(http, claim, body, headers)
        except UnsafeUrl as refused:
            error = f"refused: {refused}"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        return Attempt(delivery_id=claim.id, message_id=claim.message_id, status=None, error=error)

    async def _post(
        self,
        http: aiohttp.ClientSession,
        claim: store.Claimed,
        body: bytes,
        headers: dict[str, str],
    ) -> Attempt:
        url = claim.url
        for _ in range(MAX_REDIRECTS + 1):
            self.guard.check(url)
            async with http.post(url, data=body, headers=headers, allow_redirects=False) as r:
                if r.status in FOLLOWED and (location := r.headers.get("Location")):
                    url = str(URL(url).join(URL(location)))
                    continue
                error = None if 200 <= r.status < 300 else f"HTTP {r.status}"
                return Attempt(
                    delivery_id=claim.id, message_id=claim.message_id, status=r.status, error=error
                )
        return Attempt(
            delivery_id=claim.id,
            message_id=claim.message_id,
            status=None,
            error=f"more than {MAX_REDIRECTS} redirects",
        )

    async def _record(
        self,
        conn: asyncpg.Connection,
        claim: store.Claimed,
        attempt: Attempt,
        schedule: Sequence[float],
    ) -> None:
        if attempt.ok:
            assert attempt.status is not None
            await store.mark_delivered(conn, claim.id, attempt.status)
            return
        number = claim.attempts  # failed attempts before this one
        retry = schedule[number] if number < len(schedule) else None
        await store.mark_failed(conn, claim.id, attempt.status, attempt.error or "", retry)
        log.info(
            "webhook %s attempt %s failed: %s%s",
            claim.message_id,
            number + 1,
            attempt.error,
            "" if retry is not None else " (dead letter)",
        )


def _signed_headers(claim: store.Claimed, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers, signed over `id.timestamp.body` by the library."""
    signature = Webhook(claim.secret).sign(claim.message_id, now, claim.payload)
    return {
        "content-type": "application/json",
        "webhook-id": claim.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "user-agent": "rcc-webhooks/1",
    }
