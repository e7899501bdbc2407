"""The lots as people see them, in real Chromium against a real `rcc serve`: an admin
grants credits that expire from the user's admin page; the user's credits page lists
the lots, warns about what expires within 7 days, and its history shows an expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.browser_helpers import Site, database, running_site, shoot
from tests.test_ui_browser import sign_up

pytestmark = pytest.mark.xdist_group("lots_browser")


@pytest.fixture
async def site(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data_dir = tmp_path_factory.mktemp("lots-ui") / "data"
    async with database(server_url, template_name) as url, running_site(url, data_dir) as found:
        yield found


async def test_lots_on_the_credits_page_and_an_admin_grant_that_expires(site: Site) -> None:
    user = await (await site.context()).new_page()
    user_id = await sign_up(user, "lots@example.com")
    admin = await (await site.context()).new_page()
    admin_id = await sign_up(admin, "lots-admin@example.com")
    promoted = await execute(site.pool, c.SetAdmin(user_id=admin_id, is_admin=True, actor="ops"))
    assert isinstance(promoted, Done), promoted
    # A promo that expires in two seconds: the expiry scheduler of `rcc serve` takes it.
    soon = datetime.now(UTC) + timedelta(seconds=2)
    promo = c.AdjustCredits(user_id=user_id, amount=4, actor="ops", note="promo", expires_at=soon)
    assert isinstance(await execute(site.pool, promo), Done)

    # The admin finds the user, opens their page, and grants 30 RCC expiring in 3 days.
    await admin.goto("/app/admin/users")
    await admin.get_by_role("link", name="lots@example.com").click()
    await admin.wait_for_url(f"**/app/admin/users/{user_id}")
    expires = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    form = admin.locator("form[data-grant]")
    await form.get_by_label("RCC").fill("30")
    await form.get_by_label("Reason").fill("spring promotion")
    await form.get_by_label("Expires (UTC, optional)").fill(expires)
    await form.get_by_role("button", name="Grant").click()
    row = admin.locator('tr[data-source="manual"]').filter(has_text="30 RCC").first
    await expect(row.locator("[data-remaining]")).to_have_text("30 RCC")
    await expect(row).to_contain_text(expires[:10].split("-")[0])
    await shoot(admin, "admin-user-lots")

    # The user's credits page: the lots, the warning, the balance in the header and
    # the promo's expiry in the history.
    await user.goto("/app/credits")
    await expect(user.locator("[data-lots] tbody tr")).to_have_count(1)
    await expect(user.locator("[data-lot] [data-remaining]")).to_have_text("30 RCC")
    await expect(user.locator("[data-expiring]")).to_contain_text("30 RCC expire within 7 days")
    await expect(user.locator("header [data-balance]")).to_have_text("30 RCC")
    expired = user.locator('tr[data-reason="CREDITS_EXPIRED"]')
    await expect(expired).to_contain_text("lot L1 expired")
    await expect(expired).to_contain_text("4 RCC")
    await shoot(user, "credits-lots")
