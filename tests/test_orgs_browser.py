"""Organisation pages in a real browser against a real `rcc serve`: create, invite,
accept, the workspace switcher showing the org's balance, a job charged to the org
from the Run page, members' usage against budgets, the org's credits and buy pages.
Screenshots in artifacts/screenshots/ (orgs-*)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from rcc.service import org_commands as oc
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.browser_helpers import Site, database, running_site, shoot
from tests.comfy_server import captures
from tests.test_ui_browser import run_job, sign_up

pytestmark = pytest.mark.xdist_group("orgs_browser")

SUCCESS = captures.run_prompt("run_success")


@pytest.fixture(scope="module")
async def site(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data_dir = tmp_path_factory.mktemp("orgs-ui") / "data"
    async with database(server_url, template_name) as url, running_site(url, data_dir) as found:
        yield found


async def test_an_org_from_creation_to_a_member_spending_within_a_budget(site: Site) -> None:
    boss_context, member_context = await site.context(), await site.context()
    boss, worker = await boss_context.new_page(), await member_context.new_page()
    await sign_up(boss, "owner@studio.example")
    await sign_up(worker, "artist@studio.example")

    await boss.goto("/app/orgs")
    await shoot(boss, "orgs-empty")
    await boss.get_by_label("Name").fill("Ranch Studio")
    await boss.get_by_role("button", name="Create").click()
    await boss.wait_for_url(re.compile(r"/app/orgs/[0-9a-f-]+$"))
    org_id = boss.url.rsplit("/", 1)[-1]
    granted = await execute(
        site.pool, oc.AdjustOrgCredits(org_id=org_id, actor="test", amount=40, note="seed")
    )
    assert isinstance(granted, Done), granted

    await boss.get_by_label("Email").fill("artist@studio.example")
    await boss.get_by_role("button", name="Invite").click()
    link = boss.locator("[data-invitation-link]")
    await expect(link).to_have_value(re.compile(r"/app/invitations/"))
    await shoot(boss, "orgs-invited")

    await worker.goto(await link.input_value())
    await shoot(worker, "orgs-accept")
    await worker.get_by_role("button", name="Accept the invitation").click()
    await worker.wait_for_url(f"**/app/orgs/{org_id}")
    await expect(worker.locator("[data-my-role]")).to_have_text("member")
    await expect(worker.locator("[data-members]")).to_have_count(0)  # managers only

    # The switcher: the header now shows the org's balance, and Run charges the org.
    await worker.goto("/app/run")
    async with worker.expect_navigation():
        await worker.locator("header [data-workspace] select").select_option(label="Ranch Studio")
    await expect(worker.locator("header [data-balance]")).to_have_text("40 RCC")
    await expect(worker.get_by_label("Charge to")).to_have_value(f"org:{org_id}")
    await shoot(worker, "orgs-run-charged-to-org")
    await run_job(worker, "Image", SUCCESS)
    await expect(worker.locator("header [data-balance]")).to_have_text("39 RCC")
    # The job page reloads itself when the job ends: leave it only once it has (a
    # navigation started while that reload fires is aborted), or once it said the job
    # is not there yet (its read model lags under load; that page does not reload).
    ended = worker.locator(".heading [data-status]", has_text="succeeded")
    missing = worker.get_by_role("heading", name="No such job")
    await expect(ended.or_(missing)).to_be_visible(timeout=30_000)

    # The owner sees the member's usage this month and sets a budget under it.
    await boss.reload()
    row = boss.locator('[data-member="artist@studio.example"]')
    await expect(row.locator("[data-used]")).to_have_text("1 RCC")
    await row.locator("input[name=monthly_budget_rcc]").fill("1")
    await row.get_by_role("button", name="Set budget").click()
    await expect(row.locator("[data-budget]")).to_have_text("1 RCC")
    await shoot(boss, "orgs-members-usage-budget")

    # The budget is spent: the member's next job is refused and nothing is charged.
    await worker.goto("/app/run")
    await worker.get_by_label("Start from a saved workflow").select_option(
        label="Inverted colour square (image)"
    )
    await worker.get_by_role("button", name="Review and run").click()
    await worker.get_by_role("button", name="Run for 1 RCC").click()
    await expect(worker.locator("[data-short]")).to_contain_text("budget")
    await shoot(worker, "orgs-run-budget-exceeded")
    await expect(worker.locator("header [data-balance]")).to_have_text("39 RCC")

    await boss.goto(f"/app/orgs/{org_id}/credits")
    await expect(boss.locator("[data-org-ledger] tbody tr")).to_have_count(2)
    await shoot(boss, "orgs-credits")
    await boss.goto(f"/app/orgs/{org_id}/buy")
    await expect(boss.get_by_role("heading", name="Buy credits for Ranch Studio")).to_be_visible()
    await boss.get_by_role("button", name="Buy Small").click()
    await boss.wait_for_url("https://checkout.stripe.com/**")
    assert site.stripe.calls[-1].params["metadata[rcc_org_id]"] == org_id
    await boss.goto(f"/app/orgs/{org_id}/buy")
    await shoot(boss, "orgs-buy")
    await boss_context.close()
    await member_context.close()


async def test_an_orgs_auto_top_up_page_and_its_customer_portal(site: Site) -> None:
    context = await site.context()
    portal_page = "<title>Stripe customer portal (stand-in)</title>"  # nothing leaves
    await context.route(
        "https://billing.stripe.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=portal_page),
    )
    page = await context.new_page()
    await sign_up(page, "cfo@billing.example")
    await page.goto("/app/orgs")
    await page.get_by_label("Name").fill("Billing Studio")
    await page.get_by_role("button", name="Create").click()
    await page.wait_for_url(re.compile(r"/app/orgs/[0-9a-f-]+$"))
    org_id = page.url.rsplit("/", 1)[-1]

    await page.goto(f"/app/orgs/{org_id}/credits")
    await page.get_by_role("link", name="Auto top-up").click()
    await page.wait_for_url(f"**/app/orgs/{org_id}/auto-topup")
    await expect(page.locator("[data-billing-portal]")).to_be_disabled()  # no customer yet
    await page.get_by_label("Top up automatically").check()
    await page.get_by_label("When the organisation's balance drops below (RCC)").fill("15")
    await page.get_by_label("Buy").select_option("S")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("[data-saved]")).to_be_visible()
    chosen = await (await page.request.get(f"/orgs/{org_id}/auto-topup")).json()
    assert (chosen["enabled"], chosen["threshold_rcc"], chosen["pack"]) == (True, 15, "S")

    # The org's first purchase makes its Stripe customer and saves the card for it.
    await page.goto(f"/app/orgs/{org_id}/buy")
    await page.get_by_role("button", name="Buy Small").click()
    await page.wait_for_url("https://checkout.stripe.com/**")
    checkout = site.stripe.calls[-1].params
    made = site.stripe.customers.values()
    (customer,) = [c["id"] for c in made if c["metadata"] == {"rcc_org_id": org_id}]
    assert checkout["customer"] == customer
    assert checkout["payment_intent_data[setup_future_usage]"] == "off_session"

    await page.goto(f"/app/orgs/{org_id}/auto-topup")
    await expect(page.locator("[data-no-card]")).to_be_visible()  # until Stripe confirms
    await shoot(page, "orgs-auto-topup")
    await page.get_by_role("button", name="Open the customer portal").click()
    await page.wait_for_url("https://billing.stripe.com/**")
    assert site.stripe.calls[-1].params["customer"] == customer
    await context.close()
