"""The GPU pool's admin page in a real browser against a real `rcc serve`: the seeded
backend with its health and GPU memory from the test server's /system_stats, adding
one through the form (and a clear error for a bad URL), draining and removing it.
Screenshots go to artifacts/screenshots/admin-backends-*.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.browser_helpers import Site, database, running_site, shoot, sign_up
from tests.comfy_server import captures
from tests.comfy_server.server import ComfyServer


@pytest.fixture
async def site(server_url: str, template_name: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with (
        database(server_url, template_name) as url,
        running_site(url, tmp_path / "data") as found,
    ):
        yield found


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


async def healthy_row(page: Page, url: str) -> None:
    """Reload until the adapter's reading of `url` says healthy."""
    row = page.locator(f'tr[data-url="{url}"]')
    for _ in range(60):
        await page.reload()
        if await row.count() and (await row.locator("[data-backend-health]").inner_text()) == (
            "healthy"
        ):
            return
        await page.wait_for_timeout(250)
    raise AssertionError(f"{url} never shown healthy")


async def test_admin_sees_health_adds_drains_and_removes_backends(site: Site) -> None:
    user = await (await site.context()).new_page()
    await sign_up(user, "plain@example.com")
    refused = await user.goto("/app/admin/backends")
    assert refused is not None and refused.status == 403

    admin = await (await site.context()).new_page()
    admin_id = await sign_up(admin, "ops@example.com")
    promoted = await execute(site.pool, c.SetAdmin(user_id=admin_id, is_admin=True, actor="t"))
    assert isinstance(promoted, Done)
    await admin.goto("/app/admin")
    await admin.get_by_role("link", name="GPU backends").click()
    await admin.wait_for_url("**/app/admin/backends")
    await healthy_row(admin, site.comfy.url)  # seeded from COMFYUI_URLS
    stats = captures.body("http/system_stats.json")["devices"][0]
    seeded = admin.locator(f'tr[data-url="{site.comfy.url}"]')
    await expect(seeded.locator("[data-backend-vram]")).to_contain_text(
        f"{gib(stats['vram_free'])} / {gib(stats['vram_total'])}"
    )
    await expect(seeded.locator("[data-backend-vram]")).to_contain_text(stats["name"])

    await admin.get_by_label("URL (scheme, host and port)").fill("http://gpu-1.internal")
    await admin.get_by_role("button", name="Add backend").click()
    error = admin.locator("[data-add-backend] [data-form-error]")
    await expect(error).to_contain_text("must name its port")
    await shoot(admin, "admin-backends-error")

    async with ComfyServer() as second:
        await admin.get_by_label("URL (scheme, host and port)").fill(second.url)
        await admin.get_by_label("Slots").fill("3")
        await admin.get_by_label("Tags").fill("video, 48gb")
        await admin.get_by_role("button", name="Add backend").click()
        added = admin.locator(f'tr[data-url="{second.url}"]')
        await expect(added).to_contain_text("48gb, video")
        await healthy_row(admin, second.url)
        await expect(added.locator("[data-backend-slots]")).to_have_text("0 of 3")
        await shoot(admin, "admin-backends")

        await added.get_by_role("button", name="Drain").click()
        await expect(added.locator("[data-backend-draining]")).to_have_text("draining")
        await expect(added.get_by_role("button", name="Undrain")).to_be_visible()
        await shoot(admin, "admin-backends-drained")

        admin.on("dialog", lambda dialog: dialog.accept())
        await added.get_by_role("button", name="Remove").click()
        await expect(added).to_have_count(0)
        await expect(admin.locator("[data-backend-draining]")).to_have_count(0)
        await expect(seeded).to_have_count(1)
