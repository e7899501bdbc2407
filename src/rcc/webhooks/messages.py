"""Which log events become which webhook messages, and the message body: pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from rcc.domain.billing import is_downward
from rcc.domain.events import (
    AutoTopupDeclined,
    BillingStateChanged,
    Event,
    JobFailed,
    JobSucceeded,
    PaymentRefunded,
    SubscriptionGranted,
    TopupGranted,
)
from rcc.store.event_store import RecordedEvent

TYPES = (
    "balance.low",
    "balance.depleted",
    "credits.expiring",
    "job.succeeded",
    "job.failed",
    "payment.granted",
    "payment.refunded",
    "auto_topup.declined",  # beyond CONTRACT's list: a declined auto top-up, to tell the user
)
EXPIRING_AHEAD_DAYS = 7  # credits.expiring is sent this long before a lot's expiry


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One message to send to every endpoint that asked for its type."""

    message_id: str  # the `webhook-id`: stable across retries and redeliveries
    type: str
    created_at: datetime
    data: dict[str, Any]
    job_id: str | None = None  # job notices: the owner is looked up by the outbox

    def body(self) -> str:
        """The exact JSON body that is signed and sent: `{id, type, created_at, data}`."""
        return msgspec.json.encode(
            {
                "id": self.message_id,
                "type": self.type,
                "created_at": self.created_at,
                "data": self.data,
            }
        ).decode()


def notice_for(record: RecordedEvent, event: Event) -> Notice | None:
    """The message a log event calls for, if any (keyed by its log position)."""
    msg = f"msg_{record.position}"
    at = record.recorded_at
    match event:
        case BillingStateChanged() if is_downward(event.previous, event.state):
            kind = "balance.depleted" if event.state == "depleted" else "balance.low"
            data: dict[str, Any] = {
                "wallet": f"user:{event.wallet_id}",
                "user_id": event.wallet_id,
                "balance_rcc": event.balance,
                "threshold_rcc": event.threshold,
                "state": event.state,
            }
            return Notice(message_id=msg, type=kind, created_at=at, data=data)
        case JobSucceeded():
            data = {"job_id": event.job_id, "output_uris": list(event.output_uris)}
            return Notice(
                message_id=msg, type="job.succeeded", created_at=at, data=data, job_id=event.job_id
            )
        case JobFailed():
            data = {"job_id": event.job_id, "error": event.error}
            return Notice(
                message_id=msg, type="job.failed", created_at=at, data=data, job_id=event.job_id
            )
        case TopupGranted() | SubscriptionGranted():
            wallet = record.stream_id.removeprefix("wallet-")
            data = {
                "wallet": f"user:{wallet}",
                "user_id": wallet,
                "amount_rcc": event.amount,
                "reason": event.reason,
                "ref": event.ref,
            }
            return Notice(message_id=msg, type="payment.granted", created_at=at, data=data)
        case AutoTopupDeclined():
            data = {
                "wallet": f"user:{event.user_id}",
                "user_id": event.user_id,
                "reason": event.reason,
                "declines_in_a_row": event.in_a_row,
                "auto_topup_disabled": event.disabled,
            }
            return Notice(message_id=msg, type="auto_topup.declined", created_at=at, data=data)
        case PaymentRefunded():
            data = {
                "payment": event.payment_key,
                "refunded_amount": event.amount,
                "currency": event.currency,
            }
            return Notice(message_id=msg, type="payment.refunded", created_at=at, data=data)
    return None


def expiring_notice(
    wallet_id: str, lot: str, expires_at: datetime, remaining: int | None, now: datetime
) -> Notice:
    """credits.expiring for one lot (sent once per lot, EXPIRING_AHEAD_DAYS ahead)."""
    return Notice(
        message_id=f"msg_expiring_{wallet_id}_{lot}",
        type="credits.expiring",
        created_at=now,
        data={
            "wallet": f"user:{wallet_id}",
            "user_id": wallet_id,
            "lot": lot,
            "remaining_rcc": remaining,
            "expires_at": expires_at.isoformat(),
        },
    )
