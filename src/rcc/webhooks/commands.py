"""Registering and deleting webhook endpoints: commands and their handlers.

The registration is an event (stream `webhook-<id>`, without the secret) and a row in
`webhook_endpoints` (with it), written in one transaction. The handler makes the id and
the secret, so a repeated Idempotency-Key answers the first id and secret."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

from rcc.domain.errors import DomainError, Invalid, NotFound
from rcc.domain.events import (
    WebhookEndpointDeleted,
    WebhookEndpointRegistered,
    WebhookRedeliveryRequested,
    webhook_stream,
)
from rcc.service.commands import Command
from rcc.store.unit_of_work import UnitOfWork
from rcc.webhooks import store
from rcc.webhooks.messages import TYPES

SECRET_BYTES = 24  # 192 bits; Standard Webhooks asks for 24 to 64


class RegisterWebhook(Command, frozen=True, kw_only=True):
    url: str
    events: tuple[str, ...]
    actor: str


class DeleteWebhook(Command, frozen=True, kw_only=True):
    endpoint_id: str
    actor: str


class RedeliverWebhook(Command, frozen=True, kw_only=True):
    endpoint_id: str
    delivery_id: int
    actor: str


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def register_webhook(cmd: RegisterWebhook, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Register an endpoint for some event types; answer its id and secret (once)."""
    unknown = sorted(set(cmd.events) - set(TYPES))
    if not cmd.events or unknown:
        return Invalid(detail=f"events must be some of {list(TYPES)}; unknown: {unknown}")
    endpoint_id = f"wh_{uuid.uuid4().hex}"
    secret = new_secret()
    events = tuple(sorted(set(cmd.events)))
    event = WebhookEndpointRegistered(
        endpoint_id=endpoint_id, url=cmd.url, events=events, actor=cmd.actor
    )
    uow.stage(webhook_stream(endpoint_id), 0, [event])
    await store.insert_endpoint(uow.conn, endpoint_id, cmd.url, events, secret)
    return {"id": endpoint_id, "secret": secret, "url": cmd.url, "events": list(events)}


async def delete_webhook(cmd: DeleteWebhook, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Delete an endpoint: nothing more is queued or sent to it."""
    stream = webhook_stream(cmd.endpoint_id)
    head = (await uow.lock(stream))[stream]
    if not await store.delete_endpoint(uow.conn, cmd.endpoint_id):
        return NotFound(detail="no such webhook endpoint")
    uow.stage(
        stream, head.version, [WebhookEndpointDeleted(endpoint_id=cmd.endpoint_id, actor=cmd.actor)]
    )
    return {"id": cmd.endpoint_id, "deleted": True}


async def redeliver_webhook(cmd: RedeliverWebhook, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Make a delivery due again now (a dead letter gets one more attempt)."""
    stream = webhook_stream(cmd.endpoint_id)
    head = (await uow.lock(stream))[stream]
    message_id = await store.redeliver(uow.conn, cmd.endpoint_id, cmd.delivery_id)
    if message_id is None:
        return NotFound(detail="no such delivery for this endpoint")
    event = WebhookRedeliveryRequested(
        endpoint_id=cmd.endpoint_id,
        delivery_id=cmd.delivery_id,
        message_id=message_id,
        actor=cmd.actor,
    )
    uow.stage(stream, head.version, [event])
    return {"id": cmd.delivery_id, "message_id": message_id, "status": "pending"}


WEBHOOK_HANDLERS: dict[type[Command], Any] = {
    RegisterWebhook: register_webhook,
    DeleteWebhook: delete_webhook,
    RedeliverWebhook: redeliver_webhook,
}
