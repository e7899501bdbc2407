"""Auto top-up against the Stripe double, with the real SDK's requests: the first
Checkout saves the card, one off-session PaymentIntent per crossing under 50
concurrent debits, the credit once by Stripe's webhook, three declines switch it off,
and the customer portal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from comfy_ops.outbound_guard import DownloadAddressGuard
from portal.app import create_app
from rcc.audit import verify
from rcc.config import Settings
from rcc.domain.events import AutoTopupDeclined, decode_event
from rcc.projector.runtime import ProjectorWorker
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetAccountBlocked
from rcc.webhooks.commands import RegisterWebhook
from rcc.webhooks.service import NotifyWorker
from tests.conftest import portal_client
from tests.helpers import balance_of
from tests.org_helpers import grant_org, join, new_org
from tests.payment_helpers import balance, caught_up, delivered, payment_row
from tests.portal_helpers import IMAGE_JOB, Member, grant, sign_up
from tests.stripe_double import StripeDouble
from tests.stripe_payloads import event
from tests.webhook_receiver import eventually


@pytest.fixture
async def http(
    pay_settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(create_app(pay_settings, pool=pool)) as client:
        yield client


@pytest.fixture
async def notifier(pool: asyncpg.Pool, pay_settings: Settings) -> AsyncIterator[NotifyWorker]:
    """Billing follower (with the auto top-up trigger), outbox, sender and charger."""
    guard = DownloadAddressGuard(allow_private=True)
    worker = NotifyWorker(pool, pay_settings, guard, poll_interval=0.1, send_interval=0.1)
    task = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await asyncio.wait_for(task, timeout=15)


def saved_card_intent(user_id: str, method: str) -> dict[str, Any]:
    """payment_intent.succeeded of a Checkout that saved the card, as Stripe sends it."""
    return event(
        "payment_intent.succeeded",
        {
            "id": f"pi_checkout_{user_id[:8]}",
            "object": "payment_intent",
            "amount": 2500,
            "amount_received": 2500,
            "currency": "eur",
            "customer": f"cus_{user_id[:8]}",
            "payment_method": method,
            "setup_future_usage": "off_session",
            "status": "succeeded",
            "metadata": {"rcc_user_id": user_id},
        },
    )


async def opt_in(http: httpx.AsyncClient, member: Member, threshold: int = 50) -> None:
    body = {"enabled": True, "threshold_rcc": threshold, "pack": "S"}
    answer = await http.put("/me/auto-topup", json=body, headers=member.headers)
    assert answer.status_code == 200, answer.text


async def debit(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(
        pool, c.AdjustCredits(user_id=user_id, amount=-amount, actor="test", note="usage")
    )
    assert isinstance(done, Done), done


async def charges(pool: asyncpg.Pool, user_id: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM auto_topup_charges WHERE user_id = $1 ORDER BY created_at", user_id
        )
    return [dict(r) for r in rows]


async def test_one_payment_intent_per_crossing_credited_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, notifier: NotifyWorker
) -> None:
    member = await sign_up(http)
    uid = member.user_id
    bad = await http.put(
        "/me/auto-topup",
        json={"enabled": True, "threshold_rcc": 50, "pack": "Z"},
        headers=member.headers,
    )
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_pack"
    assert (await http.post("/billing/portal", headers=member.headers)).status_code == 409
    await opt_in(http, member)
    # The first Checkout after opting in saves the card for off-session payments.
    assert (
        await http.post("/checkout/topup", json={"pack": "M"}, headers=member.headers)
    ).is_success
    checkout = double.calls[-1].params
    assert checkout["payment_intent_data[setup_future_usage]"] == "off_session"
    assert checkout["customer_creation"] == "always"
    assert (await delivered(http, saved_card_intent(uid, "pm_card_visa")))[
        "outcome"
    ] == "card_saved"
    mine = (await http.get("/me/auto-topup", headers=member.headers)).json()
    assert mine == {
        "enabled": True, "threshold_rcc": 50, "pack": "S", "card_saved": True,
        "declines_in_a_row": 0,
    }  # fmt: skip
    portal = await http.post("/billing/portal", headers=member.headers)
    assert portal.status_code == 200 and portal.json()["url"].startswith("https://billing.stripe")
    assert double.calls[-1].params["customer"] == f"cus_{uid[:8]}"

    await grant(pool, uid, 100)
    await asyncio.gather(*(debit(pool, uid, 2) for _ in range(50)))  # 100 -> 0, one crossing
    await eventually(lambda: _sent(pool, uid))
    await asyncio.sleep(1.0)  # the follower and the charger have had time to do more
    (charge,) = await charges(pool, uid)
    (call,) = double.payment_intents()
    assert call.headers["idempotency-key"] == f"rcc-autotopup:{charge['crossing']}"
    assert call.params["off_session"] == "true" and call.params["confirm"] == "true"
    assert (call.params["customer"], call.params["payment_method"]) == (
        f"cus_{uid[:8]}",
        "pm_card_visa",
    )
    assert (call.params["amount"], call.params["metadata[rcc_pack]"]) == ("500", "S")
    assert call.params["metadata[rcc_auto_topup]"] == charge["crossing"]

    # Stripe confirms by webhook (twice, as it may): credited once, through the inbox.
    intent = double.intents[call.headers["idempotency-key"]][1]
    confirmation = event("payment_intent.succeeded", intent)
    assert (await delivered(http, confirmation))["outcome"] == "granted"
    await delivered(http, confirmation)
    await delivered(http, event("payment_intent.succeeded", intent))  # another event id
    async with pool.acquire() as conn:
        assert await balance_of(conn, uid) == 100  # 0 + the S pack's 100, once


async def _sent(pool: asyncpg.Pool, user_id: str) -> bool:
    found = await charges(pool, user_id)
    return bool(found) and found[0]["status"] == "sent"


async def test_three_declines_in_a_row_switch_auto_top_up_off(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, notifier: NotifyWorker,
    owner: asyncpg.Connection,
) -> None:  # fmt: skip
    member = await sign_up(http)
    uid = member.user_id
    hook = await execute(
        pool,
        RegisterWebhook(url="http://127.0.0.1:9/hook", events=("auto_topup.declined",), actor="t"),
    )
    assert isinstance(hook, Done)
    double.declined_methods.add("pm_card_chargeDeclined")
    await opt_in(http, member)
    await delivered(http, saved_card_intent(uid, "pm_card_chargeDeclined"))
    await grant(pool, uid, 100)
    for crossing in range(1, 5):
        await debit(pool, uid, 60)  # 100 -> 40: below 50, a crossing
        if crossing <= 3:
            await eventually(lambda n=crossing: _declined(pool, uid, n))
        await grant(pool, uid, 60)  # back to 100
    await asyncio.sleep(1.0)  # the fourth crossing finds auto top-up off: no charge
    assert len(await charges(pool, uid)) == 3
    assert len(double.payment_intents()) == 3
    mine = (await http.get("/me/auto-topup", headers=member.headers)).json()
    assert mine["enabled"] is False and mine["declines_in_a_row"] == 3
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id = $1 AND type = 'auto_topup_declined'"
            " ORDER BY version",
            f"autotopup-{uid}",
        )
        notices = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE type = 'auto_topup.declined'"
        )
    declined = [decode_event(r["type"], r["data"]) for r in rows]
    assert all(isinstance(d, AutoTopupDeclined) for d in declined)
    assert [(d.in_a_row, d.disabled) for d in declined] == [(1, False), (2, False), (3, True)]  # type: ignore[union-attr]
    assert notices == 3  # each decline notifies (a webhook to the registered endpoint)
    report = await verify(owner)  # the new streams (billing, autotopup, webhook) chain too
    assert report.ok, report.problems


async def _declined(pool: asyncpg.Pool, user_id: str, count: int) -> bool:
    found = await charges(pool, user_id)
    return len(found) == count and found[-1]["status"] == "declined"


async def test_a_later_decline_by_webhook_counts_once_per_payment_intent_and_a_success_resets(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, notifier: NotifyWorker,
    owner: asyncpg.Connection,
) -> None:  # fmt: skip
    member = await sign_up(http)
    uid = member.user_id
    await opt_in(http, member)
    await delivered(http, saved_card_intent(uid, "pm_debit_later"))
    double.processing_methods.add("pm_debit_later")  # Stripe answers `processing`

    async def cross() -> str:
        """Balance to 100, then a debit to 40 (below 50): the new charge's Stripe key."""
        await to_balance(pool, uid, 100)
        count = len(await charges(pool, uid))
        await debit(pool, uid, 60)
        await eventually(lambda: _answered(pool, uid, count + 1))
        return f"rcc-autotopup:{(await charges(pool, uid))[-1]['crossing']}"

    async def fails_later(key: str) -> list[str]:
        """Stripe's payment_intent.payment_failed, retried, and sent again as a new event."""
        failed = event("payment_intent.payment_failed", double.fail_later(key))
        again = event("payment_intent.payment_failed", failed["data"]["object"])
        return [(await delivered(http, e))["outcome"] for e in (failed, failed, again)]

    async def in_a_row() -> int:
        mine = (await http.get("/me/auto-topup", headers=member.headers)).json()
        return int(mine["declines_in_a_row"])

    first = await cross()  # processing: sent, not yet a decline
    assert await in_a_row() == 0
    assert await fails_later(first) == ["declined", "declined", "declined_already"]
    assert await in_a_row() == 1

    settled = await cross()  # this one succeeds later: credited, and the count starts over
    intent = {**double.intents[settled][1], "status": "succeeded", "amount_received": 500}
    assert (await delivered(http, event("payment_intent.succeeded", intent)))[
        "outcome"
    ] == "granted"
    async with pool.acquire() as conn:
        assert await balance_of(conn, uid) == 40 + 100
    assert await in_a_row() == 0

    double.declined_methods.add("pm_debit_later")  # declined at once by the charger...
    at_once = await cross()
    assert await in_a_row() == 1
    assert await fails_later(at_once) == ["declined_already"] * 3  # ...and then by webhook
    assert await in_a_row() == 1
    double.declined_methods.clear()

    for expected in (2, 3):
        assert (await fails_later(await cross()))[0] == "declined"
        assert await in_a_row() == expected
    mine = (await http.get("/me/auto-topup", headers=member.headers)).json()
    assert mine["enabled"] is False  # the third in a row switched it off
    await cross_without_charge(pool, uid)
    rows = await owner.fetch(
        "SELECT data FROM events WHERE stream_id = $1 AND type = 'auto_topup_declined'"
        " ORDER BY version",
        f"autotopup-{uid}",
    )
    declined = [(r["data"]["in_a_row"], r["data"]["disabled"]) for r in rows]
    assert declined == [(1, False), (1, False), (2, False), (3, True)]
    intents = [r["data"]["payment_intent"] for r in rows]
    assert len(set(intents)) == 4 and all(i.startswith("pi_test_") for i in intents)
    assert (await verify(owner)).ok


async def cross_without_charge(pool: asyncpg.Pool, user_id: str) -> None:
    """With auto top-up off, a crossing makes no charge."""
    count = len(await charges(pool, user_id))
    await to_balance(pool, user_id, 100)
    await debit(pool, user_id, 60)
    await asyncio.sleep(1.0)  # the follower and the charger have had time to act
    assert len(await charges(pool, user_id)) == count


async def _answered(pool: asyncpg.Pool, user_id: str, count: int) -> bool:
    found = await charges(pool, user_id)
    return len(found) == count and found[-1]["status"] in {"sent", "declined"}


async def to_balance(pool: asyncpg.Pool, user_id: str, target: int) -> None:
    """Grant or debit the wallet to `target` (from above 50 or to 100: no crossing)."""
    async with pool.acquire() as conn:
        gap = target - await balance_of(conn, user_id)
    if gap > 0:
        await grant(pool, user_id, gap)
    elif gap < 0:
        await debit(pool, user_id, -gap)


async def test_an_orgs_auto_top_up_charges_its_customer_once_per_crossing_credited_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, notifier: NotifyWorker,
    owner: asyncpg.Connection,
) -> None:  # fmt: skip
    org = await new_org(http, pool, credits=60)
    boss = org.people["owner"]
    admin = await join(http, pool, org, "admin")
    members = [await join(http, pool, org, "member") for _ in range(5)]
    path = f"/orgs/{org.id}/auto-topup"
    body = {"enabled": True, "threshold_rcc": 50, "pack": "S"}
    assert (await http.put(path, json=body, headers=members[0].headers)).status_code == 403
    opted = await http.put(path, json=body, headers=admin.headers)
    assert opted.status_code == 200 and opted.json()["card_saved"] is False

    # The org's first top-up saves its card, on the org's own Stripe customer.
    pack = {"pack": "M", "wallet": org.wallet}
    assert (await http.post("/checkout/topup", json=pack, headers=boss.headers)).is_success
    checkout = double.calls[-1].params
    (customer,) = [c["id"] for c in double.customers.values()]
    assert checkout["customer"] == customer and "customer_creation" not in checkout
    assert checkout["payment_intent_data[setup_future_usage]"] == "off_session"
    assert checkout["payment_intent_data[metadata][rcc_org_id]"] == org.id
    await _org_card_saved(http, boss.user_id, org.id, customer)
    assert (await http.get(path, headers=boss.headers)).json()["card_saved"] is True

    # 5 members x 6 jobs at once take the org from 60 to 30: one crossing of 50.
    job = {**IMAGE_JOB, "wallet": org.wallet}
    made = await asyncio.gather(
        *(http.post("/jobs", json=job, headers=m.headers) for m in members for _ in range(6))
    )
    assert [a.status_code for a in made] == [201] * 30, [a.text for a in made if a.is_error]
    await eventually(lambda: _sent(pool, org.id))
    await asyncio.sleep(1.0)  # the follower and the charger have had time to do more
    (charge,) = await charges(pool, org.id)
    (call,) = double.payment_intents()
    assert (call.params["customer"], call.params["payment_method"]) == (customer, "pm_card_visa")
    assert call.params["off_session"] == "true" and call.params["amount"] == "500"
    assert call.params["metadata[rcc_org_id]"] == org.id
    assert call.params["metadata[rcc_user_id]"] == admin.user_id  # the buyer: who opted in
    assert call.params["metadata[rcc_auto_topup]"] == charge["crossing"]

    # Stripe confirms by webhook (redelivered, and as another event): credited once.
    intent = double.intents[call.headers["idempotency-key"]][1]
    confirmation = event("payment_intent.succeeded", intent)
    outcomes = [
        (await delivered(http, e))["outcome"]
        for e in (confirmation, confirmation, event("payment_intent.succeeded", intent))
    ]
    assert outcomes[0] == "granted"
    assert await balance(pool, org.id) == 30 + 100
    assert all([await balance(pool, m.user_id) == 0 for m in (boss, admin, *members)])
    await caught_up(pool)
    row = await payment_row(pool, intent["id"])
    assert (row["user_id"], row["wallet_id"], row["status"]) == (admin.user_id, org.id, "paid")

    # The next crossing's PaymentIntent fails later, by webhook: counted for the org.
    double.processing_methods.add("pm_card_visa")
    await grant_org(http, pool, org.id, -90)  # 130 -> 40: a platform admin's adjustment
    await eventually(lambda: _answered(pool, org.id, 2))
    key = f"rcc-autotopup:{(await charges(pool, org.id))[-1]['crossing']}"
    failed = event("payment_intent.payment_failed", double.fail_later(key))
    assert (await delivered(http, failed))["outcome"] == "declined"
    assert (await http.get(path, headers=admin.headers)).json()["declines_in_a_row"] == 1

    off = await http.delete(path, headers=boss.headers)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert (await verify(owner)).ok


async def block(pool: asyncpg.Pool, account: str, blocked: bool, kind: str = "user") -> None:
    """A platform admin blocks (or unblocks) a user or an org."""
    command = SetAccountBlocked(
        user_id=account, blocked=blocked, reason="chargeback under review", actor="ops",
        account_kind=kind,
    )  # fmt: skip
    assert isinstance(await execute(pool, command), Done)


async def test_a_blocked_account_is_not_charged_and_is_told_why(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, notifier: NotifyWorker,
    owner: asyncpg.Connection,
) -> None:  # fmt: skip
    """A blocked user buys nothing, by Checkout or by auto top-up: the crossing's charge
    is recorded declined with the reason and Stripe is never asked; unblocked, the next
    crossing is charged. The same for an organisation a platform admin blocked."""
    member = await sign_up(http)
    uid = member.user_id
    await opt_in(http, member)
    await delivered(http, saved_card_intent(uid, "pm_card_visa"))
    await grant(pool, uid, 100)
    await block(pool, uid, True)
    await debit(pool, uid, 60)  # 100 -> 40: below 50, a crossing
    await eventually(lambda: _answered(pool, uid, 1))
    assert double.payment_intents() == []
    (charge,) = await charges(pool, uid)
    assert (charge["status"], charge["error"]) == (
        "declined",
        "account blocked: chargeback under review",
    )
    (declined,) = await owner.fetch(
        "SELECT data FROM events WHERE stream_id = $1 AND type = 'auto_topup_declined'",
        f"autotopup-{uid}",
    )
    assert declined["data"]["reason"] == "account blocked: chargeback under review"

    await block(pool, uid, False)
    await to_balance(pool, uid, 100)
    await debit(pool, uid, 60)
    await eventually(lambda: _answered(pool, uid, 2))
    assert [c["status"] for c in await charges(pool, uid)] == ["declined", "sent"]
    (call,) = double.payment_intents()
    assert call.params["metadata[rcc_user_id]"] == uid

    org = await new_org(http, pool, credits=60)
    boss = org.people["owner"]
    body = {"enabled": True, "threshold_rcc": 50, "pack": "S"}
    opted = await http.put(f"/orgs/{org.id}/auto-topup", json=body, headers=boss.headers)
    assert opted.status_code == 200, opted.text
    await _org_card_saved(http, boss.user_id, org.id, "cus_org")
    await block(pool, org.id, True, kind="org")
    await grant_org(http, pool, org.id, -20)  # 60 -> 40: a crossing
    await eventually(lambda: _answered(pool, org.id, 1))
    assert len(double.payment_intents()) == 1  # the user's only
    (charge,) = await charges(pool, org.id)
    assert (charge["status"], charge["error"]) == (
        "declined",
        "account blocked: chargeback under review",
    )
    assert (await verify(owner)).ok


async def _org_card_saved(http: httpx.AsyncClient, buyer: str, org_id: str, customer: str) -> None:
    """The org's first top-up succeeded with its card saved for later (Stripe's webhook)."""
    saved = {
        "id": "pi_org_checkout", "object": "payment_intent", "amount": 2500,
        "amount_received": 2500, "currency": "eur", "customer": customer,
        "payment_method": "pm_card_visa", "setup_future_usage": "off_session",
        "status": "succeeded", "metadata": {"rcc_user_id": buyer, "rcc_org_id": org_id},
    }  # fmt: skip
    answer = await delivered(http, event("payment_intent.succeeded", saved))
    assert answer["outcome"] == "card_saved"
