"""Outbound webhooks against a real HTTP receiver: Standard Webhooks signatures checked
by the `standardwebhooks` library, retries with a stable id, threshold notices once per
crossing, dead letters and redelivery, address checks, and kill -9 of the sender."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from comfy_ops.outbound_guard import DownloadAddressGuard
from portal.app import create_app
from rcc.config import Settings, load_settings
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.webhooks.commands import RegisterWebhook
from rcc.webhooks.sender import WebhookSender
from rcc.webhooks.service import NotifyWorker
from tests.conftest import portal_client
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.serve_helpers import RccProcess, rcc_env
from tests.webhook_receiver import Receiver, eventually

ALL_TYPES = [
    "balance.low",
    "balance.depleted",
    "credits.expiring",
    "job.succeeded",
    "job.failed",
    "payment.granted",
    "payment.refunded",
]


def webhook_settings(db_url: str, tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_SESSION_SECRET": "test-session-secret",
            "RCC_LOW_BALANCE_RCC": "20",
            "RCC_WEBHOOK_ALLOW_PRIVATE": "1",
            "RCC_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.2,0.2",
            **extra,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.close()


@contextlib.asynccontextmanager
async def notifying(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[NotifyWorker]:
    """The billing follower, the outbox and the sender, as `rcc serve` runs them."""
    guard = DownloadAddressGuard(allow_private=settings.webhook_allow_private)
    worker = NotifyWorker(pool, settings, guard, poll_interval=0.1, send_interval=0.1)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)


async def register(pool: asyncpg.Pool, url: str, events: list[str]) -> dict[str, Any]:
    done = await execute(pool, RegisterWebhook(url=url, events=tuple(events), actor="test"))
    assert isinstance(done, Done), done
    return dict(done.result)


async def debit(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(
        pool, c.AdjustCredits(user_id=user_id, amount=-amount, actor="test", note="debit")
    )
    assert isinstance(done, Done), done


async def grant(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(pool, c.GrantCredits(user_id=user_id, kind="topup", amount=amount))
    assert isinstance(done, Done), done


async def delivery_status(pool: asyncpg.Pool, status: str) -> bool:
    """True once the one delivery of the test has this status."""
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT status FROM webhook_deliveries") == status)


async def _nonempty(items: Awaitable[list[Any]]) -> bool:
    return bool(await items)


async def test_api_registers_lists_and_refuses_internal_addresses(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, receiver: Receiver, projector: Any
) -> None:
    strict = load_settings(
        {"DATABASE_URL": db_url, "RCC_DATA_DIR": str(tmp_path / "d"), "RCC_SESSION_SECRET": "s"}
    )
    admin = await bearer(pool, "admin")
    async with portal_client(create_app(strict, pool=pool)) as http:
        for url in (receiver.url, "https://127.0.0.1/hook", "https://10.1.2.3/x", "ftp://a.b/"):
            refused = await http.post(
                "/admin/webhooks", json={"url": url, "events": ["job.failed"]}, headers=admin
            )
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["error"] == "unsafe_url"
        user = await bearer(pool, "user", await funded_user(pool, 0))
        forbidden = await http.post(
            "/admin/webhooks", json={"url": "https://example.com/h", "events": ["job.failed"]},
            headers=user,
        )  # fmt: skip
        assert forbidden.status_code == 403
    async with portal_client(create_app(webhook_settings(db_url, tmp_path), pool=pool)) as http:
        bad = await http.post(
            "/admin/webhooks", json={"url": receiver.url, "events": ["nope"]}, headers=admin
        )
        assert bad.status_code == 422 and bad.json()["error"] == "invalid"
        keyed = {**admin, "Idempotency-Key": "reg-1"}
        body = {"url": receiver.url, "events": ["payment.granted", "balance.low"]}
        first = await http.post("/admin/webhooks", json=body, headers=keyed)
        again = await http.post("/admin/webhooks", json=body, headers=keyed)
        assert first.status_code == again.status_code == 201, first.text
        made = first.json()
        assert made == again.json() and made["secret"].startswith("whsec_")
        listed = (await http.get("/admin/webhooks", headers=admin)).json()
        assert [e["id"] for e in listed["items"]] == [made["id"]]
        assert "secret" not in listed["items"][0] and listed["next_cursor"] is None
        gone = await http.delete(f"/admin/webhooks/{made['id']}", headers=admin)
        assert gone.status_code == 200
        assert (await http.get("/admin/webhooks", headers=admin)).json()["items"] == []
        missing = await http.get(f"/admin/webhooks/{made['id']}x/deliveries", headers=admin)
        assert missing.status_code == 404


async def test_threshold_crossed_ten_times_sends_ten_signed_notices(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = webhook_settings(db_url, tmp_path)
    endpoint = await register(pool, receiver.url, ALL_TYPES)
    user_id = await funded_user(pool, 0)
    async with notifying(pool, settings):
        await grant(pool, user_id, 100)
        for _ in range(10):  # 100 -> 90 -> 50 -> 15 (low: one crossing) -> 10, back to 100
            for amount in (10, 40, 35, 5):
                await debit(pool, user_id, amount)
            await grant(pool, user_id, 90)
        await debit(pool, user_id, 100)  # to nothing: depleted
        await receiver.wait_for(
            lambda r: (
                [b["type"] for b in r.verified(endpoint["secret"])].count("payment.granted") == 11
                and any(b["type"] == "balance.depleted" for b in r.verified(endpoint["secret"]))
            )
        )
    bodies = receiver.verified(endpoint["secret"])  # the library accepts every one
    kinds = [b["type"] for b in bodies]
    assert kinds.count("balance.low") == 10  # once per crossing, not per debit (40 debits)
    assert kinds.count("balance.depleted") == 1
    assert kinds.count("payment.granted") == 11
    low = [b for b in bodies if b["type"] == "balance.low"]
    assert {b["data"]["balance_rcc"] for b in low} == {15}
    assert all(b["data"]["user_id"] == user_id for b in bodies)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids))  # nothing was sent twice
    assert all(
        b["id"] == r.headers["webhook-id"] for b, r in zip(bodies, receiver.requests, strict=True)
    )


async def test_a_failing_receiver_gets_it_again_with_the_same_id_then_dead_letters(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, receiver: Receiver, projector: Any
) -> None:
    settings = webhook_settings(db_url, tmp_path)
    receiver.fail_first = 3
    endpoint = await register(pool, receiver.url, ["payment.granted"])
    always_down = Receiver(fail_first=1000)
    await always_down.start()
    dead_end = await register(pool, always_down.url, ["payment.granted"])
    admin = await bearer(pool, "admin")
    try:
        async with notifying(pool, settings):
            await funded_user(pool, 30)
            await receiver.wait_for(lambda r: len(r.accepted()) == 1)
            await always_down.wait_for(lambda r: len(r.requests) == 4)  # 1 + 3 retries
            async with portal_client(create_app(settings, pool=pool)) as http:
                url = f"/admin/webhooks/{dead_end['id']}/deliveries"

                async def dead() -> list[dict[str, Any]]:
                    page = await http.get(url, params={"status": "dead"}, headers=admin)
                    return list(page.json()["items"])

                await eventually(lambda: _nonempty(dead()))
                (letter,) = await dead()
                assert letter["attempts"] == 4 and letter["last_status"] == 500
                listed = await http.get("/admin/webhooks/dead-letters", headers=admin)
                assert [d["id"] for d in listed.json()["items"]] == [letter["id"]]
                always_down.fail_first = 0  # the receiver is back; an admin redelivers
                retried = await http.post(
                    f"{url}/{letter['id']}/retry", headers={**admin, "Idempotency-Key": "r1"}
                )
                assert retried.status_code == 202, retried.text
                await always_down.wait_for(lambda r: len(r.accepted()) == 1)

                async def delivered() -> bool:
                    page = (await http.get(url, headers=admin)).json()
                    return bool(page["items"][0]["status"] == "delivered")

                await eventually(delivered)
                await asyncio.sleep(0.5)  # the same key again: no second delivery
                again = await http.post(
                    f"{url}/{letter['id']}/retry", headers={**admin, "Idempotency-Key": "r1"}
                )
                assert again.status_code == 202
                await asyncio.sleep(0.5)
                assert len(always_down.accepted()) == 1
    finally:
        await always_down.close()
    attempts = receiver.requests
    assert [r.status for r in attempts] == [500, 500, 500, 200]
    assert len({r.headers["webhook-id"] for r in attempts}) == 1  # the receiver de-duplicates
    assert len(receiver.verified(endpoint["secret"])) == 4
    assert len({r.headers["webhook-id"] for r in always_down.requests}) == 1
    always_down.verified(dead_end["secret"])


async def test_the_sender_checks_the_address_again_at_delivery(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Registered while internal addresses were allowed, sent by a sender that does not
    allow them: every attempt is refused before connecting, nothing reaches it."""
    await register(pool, receiver.url, ["payment.granted"])
    strict = webhook_settings(db_url, tmp_path, RCC_WEBHOOK_ALLOW_PRIVATE="0")
    async with notifying(pool, strict):
        await funded_user(pool, 30)
        await eventually(lambda: delivery_status(pool, "dead"))
    async with pool.acquire() as conn:
        error = await conn.fetchval("SELECT last_error FROM webhook_deliveries")
    assert error.startswith("refused:")
    assert receiver.requests == []


async def test_kill_9_of_the_sender_mid_delivery_loses_nothing(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    endpoint = await register(pool, receiver.url, ["payment.granted"])
    receiver.hold = True  # the first attempt hangs until the sender is dead
    env = rcc_env(
        db_url,
        tmp_path / "data",
        RCC_WEBHOOK_ALLOW_PRIVATE="1",
        RCC_WEBHOOK_TIMEOUT_S="1",  # the lease on a claimed delivery: 2 s
    )
    first = RccProcess(["webhooks"], env, tmp_path / "webhooks-1.log").start()
    try:
        await funded_user(pool, 30)
        async with asyncio.timeout(30):
            await receiver.arrived.wait()
        first.kill9()  # mid-delivery: the request is open, nothing was recorded
    finally:
        if first.alive():
            first.kill9()
    receiver.hold = False
    receiver.release.set()
    second = RccProcess(["webhooks"], env, tmp_path / "webhooks-2.log").start()
    try:
        await receiver.wait_for(lambda r: len(r.accepted()) >= 1, within=30)
        await eventually(lambda: delivery_status(pool, "delivered"))
    finally:
        second.stop()
    bodies = receiver.verified(endpoint["secret"])
    assert {b["type"] for b in bodies} == {"payment.granted"}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len(receiver.requests) >= 2  # the attempt that died with the sender, and again


async def test_credits_expiring_is_sent_once_a_week_ahead(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    endpoint = await register(pool, receiver.url, ["credits.expiring"])
    user_id = await funded_user(pool, 0)
    now = datetime.now(UTC)
    for days in (3, 30):  # only the first is within a week of its expiry
        done = await execute(
            pool,
            c.AdjustCredits(
                user_id=user_id, amount=10, actor="t", note="gift",
                expires_at=now + timedelta(days=days),
            ),
        )  # fmt: skip
        assert isinstance(done, Done), done
    sender = WebhookSender(pool, DownloadAddressGuard(allow_private=True))
    for _ in range(3):  # each tick looks again; the lot is announced once
        await sender.tick()
    (body,) = receiver.verified(endpoint["secret"])
    assert body["type"] == "credits.expiring"
    assert body["data"]["user_id"] == user_id and body["data"]["remaining_rcc"] == 10
    expires = datetime.fromisoformat(body["data"]["expires_at"])
    assert timedelta(days=2) < expires - now < timedelta(days=4)
