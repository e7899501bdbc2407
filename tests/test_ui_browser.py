"""The portal in a real browser: headless Chromium against a real `rcc serve` on real
PostgreSQL, with the ComfyUI test server behind the adapter and Stripe's webhook
delivered, signed, by the test. Every page is photographed at desktop and phone
width into artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from comfy_adapter.run import prompt_id_for
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.sample_templates import IMAGE_TO_IMAGE_ID
from tests.browser_helpers import Site, database, running_site, shoot, sign_up
from tests.comfy_server import captures
from tests.template_helpers import png

pytestmark = pytest.mark.xdist_group("ui_browser")  # one worker shares the one service

SUCCESS = captures.run_prompt("run_success")  # EmptyImage -> ImageInvert -> SaveImage
RUNTIME_ERROR = captures.run_prompt("run_runtime_error")  # ImageToMask(alpha) fails
PACK_S = ("S", 500, 100)  # id, price in cents, credits


@pytest.fixture(scope="module")
async def site(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data_dir = tmp_path_factory.mktemp("ui") / "data"
    async with database(server_url, template_name) as url, running_site(url, data_dir) as found:
        yield found


async def balance_shown(page: Page) -> str:
    return await page.locator("header [data-balance]").inner_text()


async def run_job(page: Page, kind: str, workflow: dict[str, object]) -> str:
    """Upload a workflow file on Run, confirm the cost, land on the job's page; its id."""
    await page.goto("/app/run")
    await page.get_by_label(kind).check()
    exported = json.dumps(workflow).encode()
    await page.locator("[data-upload]").set_input_files(
        files=[{"name": "workflow_api.json", "mimeType": "application/json", "buffer": exported}]
    )
    await expect(page.locator("[data-workflow]")).to_have_value(re.compile("class_type"))
    await page.get_by_role("button", name="Review and run").click()
    cost = "5 RCC" if kind == "Video" else "1 RCC"
    await page.get_by_role("button", name=f"Run for {cost}").click()
    await page.wait_for_url(re.compile(r"/app/jobs/[0-9a-f-]+$"))
    return page.url.rsplit("/", 1)[-1]


async def test_sign_up_buy_run_fail_refund_and_the_credits_page(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    await page.goto("/app/signin")
    await expect(page.get_by_role("link", name="Sign in with GitLab")).to_be_visible()
    await shoot(page, "signin")
    await page.goto("/app/signup")
    await shoot(page, "signup")
    user_id = await sign_up(page, "ada@example.com")
    assert await balance_shown(page) == "0 RCC"
    await expect(page.locator("[data-low-banner]")).to_be_visible()

    # Nothing to spend yet: the server's 402 becomes a friendly message with a buy link.
    # (Starting from a ready-made workflow picks its type, and the cost follows.)
    await page.get_by_label("Start from a saved workflow").select_option(
        label="Eight-frame animation (video)"
    )
    await expect(page.get_by_label("Video")).to_be_checked()
    await expect(page.locator("[data-cost-shown]")).to_have_text("5 RCC")
    await page.get_by_role("button", name="Review and run").click()
    await expect(page.locator("[data-confirm]")).to_contain_text("less than this job costs")
    await page.get_by_role("button", name="Run for 5 RCC").click()
    short = page.locator("[data-short]")
    await expect(short).to_contain_text("needs 5 RCC and your balance is 0 RCC")
    await shoot(page, "run-not-enough-credits")
    await short.get_by_role("link", name="Buy credits").click()
    await page.wait_for_url("**/app/buy")
    await shoot(page, "buy")

    # Buy the small pack: off to (a stand-in for) Stripe Checkout, back to the return page,
    # and the credit arrives while the page watches, once Stripe's signed webhook lands.
    await page.get_by_role("button", name="Buy Small").click()
    await page.wait_for_url("https://checkout.stripe.com/**")
    session_id = page.url.rsplit("/", 1)[-1]
    checkout = site.stripe.calls[-1].params
    assert checkout["metadata[rcc_pack]"] == "S" and checkout["client_reference_id"] == user_id
    await page.goto(f"/billing/success?session_id={session_id}")
    await expect(page.locator("[data-arrival-title]")).to_contain_text("waiting")
    await shoot(page, "billing-success-waiting")
    pack, price, credits = PACK_S
    await site.deliver_checkout(user_id, session_id, pack, price)
    await expect(page.locator("[data-arrival-title]")).to_have_text("Your credits have arrived")
    await expect(page.locator("[data-arrived]")).to_contain_text(f"+{credits} RCC")
    await expect(page.locator("header [data-balance]")).to_have_text("100 RCC")
    await expect(page.locator("[data-low-banner]")).to_be_hidden()
    await shoot(page, "billing-success")
    await page.goto("/billing/cancel")
    await shoot(page, "billing-cancel")

    # An image job against the ComfyUI test server: 1 RCC, live status, the output.
    await page.goto("/app/jobs")
    await expect(page.get_by_text("No jobs yet")).to_be_visible()
    await shoot(page, "jobs-empty")
    await page.goto("/app/run")
    await page.get_by_label("Image").check()
    await page.get_by_label("ComfyUI workflow, API format (JSON)").fill(
        json.dumps(SUCCESS, indent=2)
    )
    await page.get_by_role("button", name="Review and run").click()
    await expect(page.locator("[data-confirm]")).to_contain_text("from 100 RCC to 99 RCC")
    await shoot(page, "run-confirm")
    await page.get_by_role("button", name="Run for 1 RCC").click()
    await page.wait_for_url(re.compile(r"/app/jobs/[0-9a-f-]+$"))
    await expect(page.locator("header [data-balance]")).to_have_text("99 RCC")
    # The list follows the job live: the same page, never reloaded, sees it succeed.
    await page.goto("/app/jobs")
    await page.evaluate("window.stillTheSamePage = true")
    row = page.locator("tbody tr").first
    await expect(row.locator("[data-status]")).to_have_text("succeeded", timeout=30_000)
    assert await page.evaluate("window.stillTheSamePage === true")
    await expect(row.locator("[data-duration]")).to_have_text(re.compile(r"\d"))
    await shoot(page, "jobs")
    await row.get_by_role("link").click()
    await expect(page.locator(".outputs img")).to_be_visible()
    await page.wait_for_function(  # the PNG the adapter stored, served back and decoded
        "() => document.querySelector('.outputs img').naturalWidth > 0"
    )
    await expect(page.get_by_role("link", name=re.compile("^Download"))).to_be_visible()
    await expect(page.locator("[data-log]")).to_contain_text("succeeded")
    await shoot(page, "job-succeeded")

    # A failing job: its reserve comes back, and the page says so.
    await run_job(page, "Image", RUNTIME_ERROR)
    await expect(page.locator(".heading [data-status]")).to_have_text("failed", timeout=30_000)
    await expect(page.locator("[data-refund]")).to_contain_text("Refunded 1 RCC")
    await expect(page.locator("[data-log]")).to_contain_text("execution_error")
    await expect(page.locator("header [data-balance]")).to_have_text("99 RCC")
    await shoot(page, "job-failed")

    # Credits: every line of it, and a filter.
    await page.goto("/app/credits")
    rows = page.locator("table.ledger tbody tr")
    await expect(rows).to_have_count(4)
    reasons = [await r.get_attribute("data-reason") for r in await rows.all()]
    assert reasons == ["JOB_RELEASE", "JOB_RESERVE", "JOB_RESERVE", "TOPUP_GRANT"]
    await expect(page.locator(".stat-value").first).to_have_text("99 RCC")
    await expect(page.locator("svg.chart")).to_have_attribute(
        "aria-label", re.compile("1 RCC used")
    )
    await shoot(page, "credits")
    await page.get_by_label("Kind").select_option("TOPUP_GRANT")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("+100 RCC")
    await context.close()


async def test_admin_pages_and_a_balance_change_the_user_sees_live(site: Site) -> None:
    user_context, admin_context = await site.context(), await site.context()
    user = await user_context.new_page()
    await sign_up(user, "bob@example.com")
    # A non-admin gets no admin page, and no link to one.
    forbidden = await user.goto("/app/admin")
    assert forbidden is not None and forbidden.status == 403
    await expect(user.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(user.locator("nav.tabs").get_by_role("link", name="Admin")).to_have_count(0)
    await shoot(user, "forbidden")
    for path in ["/app/admin/users", "/app/admin/jobs", "/app/admin/models"]:
        answer = await user.goto(path)
        assert answer is not None and answer.status == 403, path
    await user.goto("/app/jobs")
    assert await balance_shown(user) == "0 RCC"

    admin = await admin_context.new_page()
    admin_id = await sign_up(admin, "root@example.com")
    promoted = await execute(site.pool, c.SetAdmin(user_id=admin_id, is_admin=True, actor="ops"))
    assert isinstance(promoted, Done), promoted
    await admin.goto("/")
    await admin.wait_for_url("**/app/admin")
    await expect(admin.locator("svg.chart")).to_have_count(3)
    await shoot(admin, "admin-dashboard")

    # Adjust Bob's balance with a reason: Bob's open page shows it without a reload.
    await admin.get_by_role("link", name="Users").click()
    await admin.get_by_label("Email starts with").fill("bob@")
    await admin.get_by_role("button", name="Search").click()
    row = admin.locator('tr[data-email="bob@example.com"]')
    await expect(admin.locator("tbody tr")).to_have_count(1)
    await row.get_by_text("Adjust RCC").click()
    await row.get_by_label(re.compile("^Change")).fill("25")
    await row.get_by_label("Reason").fill("goodwill for the outage")
    await row.get_by_role("button", name="Apply").click()
    await expect(row.locator("[data-user-balance]")).to_have_text("25 RCC")
    await expect(user.locator("header [data-balance]")).to_have_text("25 RCC", timeout=15_000)
    admin.on("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Make admin").click()
    await expect(row.locator("[data-user-admin]")).to_have_text("yes")
    await row.get_by_role("button", name="Remove admin").click()
    await expect(row.locator("[data-user-admin]")).to_have_text("no")
    await shoot(admin, "admin-users")
    await user.goto("/app/credits")
    await expect(user.locator("table.ledger")).to_contain_text("goodwill for the outage")

    await admin.goto("/app/admin/jobs")
    await shoot(admin, "admin-jobs")
    await admin.goto("/app/admin/logs")
    await expect(admin.locator("table.logs")).to_contain_text("root@example.com")
    csv_link = admin.get_by_role("link", name="Export CSV")
    async with admin.expect_download() as download_info:
        await csv_link.click()
    download = await download_info.value
    csv_text = await asyncio.to_thread(Path(await download.path()).read_text)
    assert csv_text.startswith("id,at,user_id,actor,ip,action,status,detail")
    await shoot(admin, "admin-logs")

    # Models: install by URL, watch the download's progress, then delete the file.
    await admin.goto("/app/admin/models")
    await expect(admin.locator("[data-models-state]")).to_have_text(re.compile("No models"))
    await admin.get_by_label("Download URL").fill(site.model_url)
    await admin.get_by_label("Kind (ComfyUI folder)").select_option("loras")
    await admin.get_by_role("button", name="Install").click()
    model = admin.locator('tr[data-model="tiny-test-model.safetensors"]')
    await expect(model.locator("progress")).to_be_visible()
    await shoot(admin, "admin-models-installing")
    await expect(model.locator(".status")).to_have_text("installed", timeout=30_000)
    await expect(model).to_contain_text("3.0 MB")
    await shoot(admin, "admin-models")
    await model.get_by_role("button", name="Delete").click()
    await expect(model).to_have_count(0)

    # ComfyUI: no container engine on this machine, and the page says so plainly.
    await admin.goto("/app/admin/comfyui")
    await expect(admin.locator("[data-comfyui-state]")).to_contain_text("Could not read")
    await shoot(admin, "admin-comfyui")
    await user_context.close()
    await admin_context.close()


async def test_lots_on_the_credits_page_and_an_admin_grant_that_expires(site: Site) -> None:
    """Issue 12's lots as people see them: an admin grants credits that expire from the
    user's admin page; the user's credits page lists the lots, warns about what expires
    within 7 days, and its history shows an expiry taken by the scheduler."""
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
    # the promo's expiry in the history. It is looked at once the promo's instant and
    # the scheduler's next tick have passed (a fast run got here within the 2 s).
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.5)
    await user.goto("/app/credits")
    await expect(user.locator("[data-lots] tbody tr")).to_have_count(1)
    await expect(user.locator("[data-lot] [data-remaining]")).to_have_text("30 RCC")
    await expect(user.locator("[data-expiring]")).to_contain_text("30 RCC expire within 7 days")
    await expect(user.locator("header [data-balance]")).to_have_text("30 RCC")
    expired = user.locator('tr[data-reason="CREDITS_EXPIRED"]')
    await expect(expired).to_contain_text("lot L1 expired")
    await expect(expired).to_contain_text("4 RCC")
    await shoot(user, "credits-lots")


# --- templates (h4) ----------------------------------------------------------------


async def test_pick_the_sample_fill_the_form_upload_confirm_and_see_the_result(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    user_id = await sign_up(page, "painter@example.com")
    granted = await execute(site.pool, c.GrantCredits(user_id=user_id, kind="topup", amount=10))
    assert isinstance(granted, Done)

    await page.goto("/app/templates")
    await expect(page.get_by_role("heading", name="Text to image")).to_be_visible()
    await shoot(page, "template-gallery")
    await page.get_by_role("link", name="Image to image").click()
    await page.wait_for_url(f"**/app/templates/{IMAGE_TO_IMAGE_ID}")
    await expect(page.locator("textarea, input, select").first).to_be_visible()
    assert await page.locator("[data-workflow], pre").count() == 0  # no JSON in sight

    await page.get_by_label("How to repaint it").fill("a watercolour of a red barn")
    await page.get_by_label("Strength").fill("0.45")
    await page.get_by_label("Your picture").set_input_files(
        files=[{"name": "barn.png", "mimeType": "image/png", "buffer": png(96, 64)}]
    )
    await expect(page.locator('[data-upload-state="image"]')).to_have_text(
        "Uploaded (96 \u00d7 64)"
    )
    await page.get_by_role("button", name="Review and run").click()
    await expect(page.locator("[data-confirm-text]")).to_have_text(
        "This job holds 2 RCC from your balance."
    )
    await shoot(page, "template-form-confirm")
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.wait_for_url(re.compile(r"/app/jobs/[0-9a-f-]+$"))
    job_id = page.url.rsplit("/", 1)[-1]

    shown = page.locator("ul.outputs img")
    await expect(shown).to_be_visible()
    # Visible is not loaded: wait for the image's load (or error) before judging it.
    loaded = """img => img.complete ? img.naturalWidth > 0 : new Promise(done => {
        img.addEventListener("load", () => done(img.naturalWidth > 0), {once: true});
        img.addEventListener("error", () => done(false), {once: true});
    })"""
    assert await shown.evaluate(loaded)
    await shoot(page, "template-job-result")
    async with site.pool.acquire() as conn:
        sent = await conn.fetchval(
            "SELECT data->>'template' FROM events WHERE stream_id = $1 AND type = 'job_created'",
            f"job-{job_id}",
        )
    assert sent == IMAGE_TO_IMAGE_ID
    prompt = site.comfy.history[prompt_id_for(job_id)]["prompt"][2]  # what the backend ran
    assert prompt["4"]["inputs"]["image"].startswith("rcc_upload_")
    assert prompt["5"]["inputs"]["denoise"] == 0.45
    await page.goto("/app/jobs")
    await expect(page.locator("img.thumb")).to_be_visible()
    await shoot(page, "template-jobs-thumbnails")
    await context.close()
