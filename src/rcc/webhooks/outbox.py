"""`WebhookOutbox`: the follower that turns log events into queued deliveries.

A subscriber of the one log follower (rcc.follower): each batch's notices are queued
for the endpoints that asked for them in the batch's own transaction, with the
checkpoint, and `(endpoint, message id)` is unique, so each message is queued exactly
once per endpoint. Sending is the sender's business (at least once).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from rcc.domain.events import job_stream
from rcc.follower.decoding import Decoded
from rcc.webhooks.messages import Notice, notice_for
from rcc.webhooks.store import enqueue

NAME = "webhook_outbox"


class WebhookOutbox:
    name = NAME

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
        """Queue the notices this batch calls for (inside the batch's transaction)."""
        notices = [n for record, event in events if (n := notice_for(record, event))]
        if not notices:
            return
        notices = await _with_job_owners(conn, notices)
        await enqueue(conn, notices)


async def _with_job_owners(conn: asyncpg.Connection, notices: list[Notice]) -> list[Notice]:
    """Job notices name the job's owner (job events name only the job)."""
    jobs = sorted({n.job_id for n in notices if n.job_id})
    if not jobs:
        return notices
    rows = await conn.fetch(
        "SELECT stream_id, state->>'user_id' AS user_id FROM streams"
        " WHERE stream_id = ANY($1::text[])",
        [job_stream(j) for j in jobs],
    )
    owners = {r["stream_id"].removeprefix("job-"): r["user_id"] for r in rows}
    return [
        msgspec.structs.replace(n, data={**n.data, "user_id": owners.get(n.job_id)})
        if n.job_id
        else n
        for n in notices
    ]
