"""The policy and plan admin pages, the buy page's plan comparison and the blocked
banner in headless Chromium against a real `rcc serve` (screenshots in
artifacts/screenshots/)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect

from rcc.policy.keys import KEYS
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetAccountBlocked
from tests.browser_helpers import Site, database, running_site, shoot, sign_up

pytestmark = pytest.mark.xdist_group("policy_browser")


@pytest.fixture(scope="module")
async def site(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data_dir = tmp_path_factory.mktemp("policy-ui") / "data"
    async with database(server_url, template_name) as url, running_site(url, data_dir) as found:
        yield found


async def _set(page: Page, key: str, scope: str, scope_id: str, value: str, reason: str) -> None:
    form = page.locator("[data-policy-form]")
    await form.locator('select[name="key"]').select_option(key)
    await form.locator('select[name="scope"]').select_option(scope)
    await form.locator('input[name="scope_id"]').fill(scope_id)
    await form.locator('input[name="value"]').fill(value)
    await form.locator('input[name="reason"]').fill(reason)
    await form.get_by_role("button", name="Set").click()


async def test_policy_and_plan_pages_the_plan_comparison_and_the_blocked_banner(
    site: Site,
) -> None:
    admin_context, user_context = await site.context(), await site.context()
    admin = await admin_context.new_page()
    admin_id = await sign_up(admin, "policy-admin@example.com")
    promoted = await execute(site.pool, c.SetAdmin(user_id=admin_id, is_admin=True, actor="ops"))
    assert isinstance(promoted, Done), promoted

    await admin.goto("/app/admin/policies")
    await expect(admin.locator("tr[data-policy]")).to_have_count(len(KEYS))  # one row a key
    await _set(admin, "price.VIDEO_TASK", "global", "", "-1", "typo")
    await expect(admin.locator("[data-form-error]")).to_contain_text("between 1 and 100000")
    await _set(admin, "price.VIDEO_TASK", "global", "", "4", "video is cheaper to run now")
    row = admin.locator('tr[data-policy="price.VIDEO_TASK"]')
    await expect(row.locator('[data-scope-value="global:"]')).to_contain_text("4")
    await expect(admin.locator("[data-policy-history]")).to_contain_text("video is cheaper")
    await shoot(admin, "admin-policies")

    await admin.get_by_role("link", name="Plans").click()
    await admin.wait_for_url("**/app/admin/plans")
    await _set(admin, "limits.daily_rcc", "plan", "free", "30", "free tier daily cap")
    await expect(admin.locator('[data-daily-limit="free"]')).to_have_text("30 RCC")
    await expect(admin.locator('[data-daily-limit="pro"]')).to_have_text("unlimited")
    await admin.wait_for_load_state("networkidle")  # the reload after the change is done
    await expect(admin.get_by_role("heading", name="Plans", exact=True)).to_be_visible()
    await shoot(admin, "admin-plans")

    user = await user_context.new_page()
    user_id = await sign_up(user, "policy-user@example.com")
    await user.goto("/app/buy")
    table = user.locator("[data-plan-compare]")
    await expect(table.locator('[data-daily-limit="free"]')).to_have_text("30 RCC")
    await expect(table).to_contain_text("(yours)")
    await expect(user.locator("[data-blocked-banner]")).to_have_count(0)
    await shoot(user, "buy-plan-comparison")

    blocked = await execute(
        site.pool,
        SetAccountBlocked(user_id=user_id, blocked=True, reason="unpaid invoice", actor="ops"),
    )
    assert isinstance(blocked, Done), blocked
    await user.goto("/app/jobs")
    banner = user.locator("[data-blocked-banner]")
    await expect(banner).to_contain_text("Your account is blocked")
    await expect(banner).to_contain_text("unpaid invoice")
    await shoot(user, "blocked-banner")
