"""The billing pages in a real browser (Chromium against `rcc serve`): the banner that
follows the billing state, the first-run welcome, auto top-up settings, and the
webhook admin pages (add an endpoint, its deliveries, a dead letter redelivered).
Screenshots go to artifacts/screenshots/ (billing-*)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.browser_helpers import Site, database, running_site, shoot
from tests.portal_helpers import PASSWORD
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.xdist_group("billing_browser")


@pytest.fixture
async def site(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data_dir = tmp_path_factory.mktemp("billing-ui") / "data"
    extra = {"RCC_WEBHOOK_ALLOW_PRIVATE": "1", "RCC_WEBHOOK_RETRY_SCHEDULE_S": "0.2"}
    async with database(server_url, template_name) as url, running_site(url, data_dir, extra) as s:
        yield s


async def test_banner_auto_top_up_and_webhook_admin_pages(site: Site) -> None:
    receiver = Receiver(fail_first=1000)  # down: its deliveries end as dead letters
    await receiver.start()
    try:
        await _walk(site, receiver)
    finally:
        await receiver.close()


async def _walk(site: Site, receiver: Receiver) -> None:
    context = await site.context()
    page = await context.new_page()
    await page.goto("/app/signup")
    await page.get_by_label("Email").fill("grace@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/app/buy?welcome=1")  # nothing and no job: welcomed on Buy
    await expect(page.locator("[data-welcome]")).to_contain_text("Welcome to RCC")
    await expect(page.locator("[data-low-banner] [data-when=depleted]")).to_be_visible()
    await shoot(page, "billing-first-run-welcome")
    user_id = (await (await page.request.get("/me")).json())["id"]

    # A few credits: low_balance, and the banner offers to buy (live, without a reload).
    done = await execute(site.pool, c.GrantCredits(user_id=user_id, kind="topup", amount=3))
    assert isinstance(done, Done)
    await page.goto("/app/credits")
    banner = page.locator("[data-low-banner]")
    await expect(banner.locator("[data-when=low_balance]")).to_be_visible()
    await expect(banner.get_by_role("link", name="Buy credits")).to_be_visible()
    await shoot(page, "billing-low-balance-banner")

    # Auto top-up settings.
    await page.get_by_role("link", name="Auto top-up").click()
    await page.wait_for_url("**/app/auto-topup")
    await page.get_by_label("Top up automatically").check()
    await page.get_by_label("When my balance drops below (RCC)").fill("20")
    await page.get_by_label("Buy").select_option("M")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("[data-saved]")).to_be_visible()
    mine = await (await page.request.get("/me/auto-topup")).json()
    assert (mine["enabled"], mine["threshold_rcc"], mine["pack"]) == (True, 20, "M")
    await page.reload()
    await expect(page.locator("[data-no-card]")).to_be_visible()
    await shoot(page, "billing-auto-topup")

    # An admin adds an endpoint, sees its secret once, and redelivers a dead letter.
    admin_page = await (await site.context()).new_page()
    await admin_page.goto("/app/signup")
    await admin_page.get_by_label("Email").fill("ops@example.com")
    await admin_page.get_by_label("Password").fill(PASSWORD)
    await admin_page.get_by_role("button", name="Sign up").click()
    await admin_page.wait_for_url("**/app/buy?welcome=1")
    admin_id = (await (await admin_page.request.get("/me")).json())["id"]
    promoted = await execute(site.pool, c.SetAdmin(user_id=admin_id, is_admin=True, actor="ops"))
    assert isinstance(promoted, Done)
    await admin_page.goto("/app/admin/webhooks")
    await admin_page.get_by_label("Endpoint URL").fill(receiver.url)
    await admin_page.get_by_role("button", name="Add endpoint").click()
    secret = admin_page.locator("[data-secret-value]")
    await expect(secret).to_contain_text("whsec_")
    await shoot(admin_page, "billing-webhooks-added")
    granted = await execute(site.pool, c.GrantCredits(user_id=user_id, kind="topup", amount=50))
    assert isinstance(granted, Done)
    await receiver.wait_for(lambda r: len(r.requests) >= 2, within=30)  # first try + 1 retry
    await admin_page.reload()
    await expect(admin_page.locator("[data-deliveries] [data-delivery]")).to_have_count(1)
    await shoot(admin_page, "billing-webhooks-dead-letters")
    receiver.fail_first = 0  # the receiver is back
    await admin_page.locator("[data-endpoint] a").click()
    await admin_page.wait_for_url("**/app/admin/webhooks/wh_*")
    await admin_page.get_by_role("button", name="Redeliver").click()
    await expect(admin_page.get_by_role("button", name="Queued")).to_be_visible()
    await receiver.wait_for(lambda r: len(r.accepted()) == 1, within=30)
    await admin_page.reload()
    await expect(admin_page.locator("[data-delivery] .status")).to_have_text("delivered")
    await shoot(admin_page, "billing-webhook-deliveries")
    bodies = receiver.verified(await secret_of(site, receiver.url))
    assert {b["type"] for b in bodies} == {"payment.granted"}


async def secret_of(site: Site, url: str) -> str:
    async with site.pool.acquire() as conn:
        found: str = await conn.fetchval("SELECT secret FROM webhook_endpoints WHERE url = $1", url)
    return found
