"""Helpers for the payment tests: signed deliveries, waiting for read models, lookups."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import msgspec

from projections.registry import NAMES
from rcc.config import Settings
from rcc.projector.wait import wait_for
from rcc.store.event_store import Checkpoint
from tests.helpers import balance_of
from tests.stripe_payloads import WEBHOOK_SECRET, encode, sign

CATALOG_PRICES = {"S": (100, 500), "M": (550, 2500), "L": (1200, 5000)}  # credits, cents
STARTER = {"month": ("price_rcc_starter_month", 1200), "year": ("price_rcc_starter_year", 12000)}
STARTER_PER_MONTH = 300


def with_stripe(settings: Settings, api_base: str = "http://127.0.0.1:9") -> Settings:
    """Test settings with Stripe configured (the API base is a double, or nowhere)."""
    return msgspec.structs.replace(
        settings,
        stripe_secret_key="sk_test_rcc_51Hx",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=api_base,
    )


async def deliver(
    http: httpx.AsyncClient,
    event: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    """POST an event to /webhooks/stripe as Stripe does (raw body, Stripe-Signature)."""
    raw = encode(event)
    header = sign(raw, secret, timestamp)
    return await http.post(
        "/webhooks/stripe",
        content=raw if body is None else body,
        headers={"stripe-signature": header, "content-type": "application/json"},
    )


async def delivered(http: httpx.AsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    """Deliver and expect a 200; the answer's body."""
    response = await deliver(http, event)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def caught_up(pool: asyncpg.Pool) -> None:
    """Wait until every projection has applied everything committed so far."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT tx_id::text::bigint AS tx_id, position FROM events
                ORDER BY tx_id DESC, position DESC LIMIT 1"""
        )
    checkpoint = Checkpoint(row["tx_id"], row["position"]) if row else Checkpoint()
    assert await wait_for(pool, checkpoint, NAMES, 15.0), "projections did not catch up"


async def balance(pool: asyncpg.Pool, user_id: str) -> int:
    async with pool.acquire() as conn:
        return await balance_of(conn, user_id)


async def received(pool: asyncpg.Pool, event_id: str) -> list[dict[str, Any]]:
    """The StripeEventReceived events recorded for one Stripe event id."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT stream_id, data FROM events
                WHERE type = 'stripe_event_received' AND data->>'event_id' = $1""",
            event_id,
        )
    return [{"stream_id": r["stream_id"], **r["data"]} for r in rows]


async def ledger_lines(pool: asyncpg.Pool, user_id: str) -> list[tuple[str, int]]:
    """(event type, delta) of the wallet's ledger events, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version",
            f"wallet-{user_id}",
        )
    signs = {"credits_clawed_back": -1, "credits_reserved": -1}
    return [
        (r["type"], signs.get(r["type"], 1) * int(r["data"].get("amount", 0)))
        for r in rows
        if r["type"] not in {"wallet_opened", "job_settled"}
    ]


async def payment_row(pool: asyncpg.Pool, key: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM payments WHERE payment_key = $1", key)
    assert row is not None, f"no payments row for {key}"
    return dict(row)


def ago(seconds: int) -> int:
    return int(time.time()) - seconds
