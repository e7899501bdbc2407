"""The pages over ASGI: who may see what, what each page shows, and that none of them
leaks into the JSON API's schema. (The browser flows are in test_ui_browser.py.)"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx

from rcc.service import commands as c
from rcc.service.bus import execute
from tests.conftest import portal_client
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up

USER_PAGES = [
    "/app/run",
    "/app/jobs",
    "/app/credits",
    "/app/buy",
    "/billing/success",
    "/billing/cancel",
]
ADMIN_PAGES = [
    "/app/admin",
    "/app/admin/users",
    "/app/admin/jobs",
    "/app/admin/logs",
    "/app/admin/models",
    "/app/admin/comfyui",
]


def balance_in_header(html: str) -> str:
    found = re.search(r'<span data-balance aria-live="polite">([^<]*)</span>', html)
    assert found, "the header shows no balance"
    return found.group(1)


async def test_visitors_are_sent_to_sign_in_and_back(client: httpx.AsyncClient) -> None:
    for path in [*USER_PAGES, *ADMIN_PAGES, "/app/jobs/some-job"]:
        answer = await client.get(path)
        assert answer.status_code == 303, (path, answer.text)
        assert answer.headers["location"].startswith("/app/signin?next=/"), path
    assert (await client.get("/")).headers["location"] == "/app/signin"
    page = await client.get("/app/signin", params={"next": "/app/credits"})
    assert page.status_code == 200 and 'data-next="/app/credits"' in page.text
    assert "Sign in with GitLab" not in page.text, "GitLab is not configured in this test"
    evil = await client.get("/app/signin", params={"next": "//evil.example/x"})
    assert 'data-next="/app/run"' in evil.text, "never a redirect off the site"
    assert (await client.get("/app/signup")).status_code == 200


async def test_every_user_page_renders_with_the_live_balance(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 3)
    for path in USER_PAGES:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:2000])
        assert balance_in_header(page.text) == "3 RCC", path
        assert f'content="{member.csrf}"' in page.text, "the page carries the CSRF token"
        assert "Your balance is low" in page.text and "data-low-banner" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
    assert (await client.get("/")).headers["location"] == "/app/run"
    assert (await client.get("/app/signin")).headers["location"] == "/app/run"


async def test_jobs_job_and_credits_pages_show_the_ledger(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)
    empty = await client.get("/app/jobs")
    assert "No jobs yet" in empty.text
    job = (await client.post("/jobs", json=IMAGE_JOB, headers=member.headers)).json()
    failed = await execute(
        pool, c.MarkJob(job_id=job["id"], status="failed", error="CUDA out of memory")
    )
    assert not hasattr(failed, "code"), failed
    jobs = await client.get("/app/jobs")
    assert job["id"] in jobs.text and "status-failed" in jobs.text
    page = await client.get(f"/app/jobs/{job['id']}")
    assert page.status_code == 200
    assert "CUDA out of memory" in page.text
    assert "Refunded 1 RCC to your balance" in page.text
    credits = await client.get("/app/credits")
    assert credits.text.count("<tr data-reason=") == 3  # grant, reserve, release
    assert "Refund for a job" in credits.text and '<svg class="chart"' in credits.text
    only = await client.get("/app/credits", params={"reason": "JOB_RELEASE"})
    assert only.text.count("<tr data-reason=") == 1
    nothing = await client.get(
        "/app/credits", params={"since": "2001-01-01", "until": "2001-01-02"}
    )
    assert "Nothing matches" in nothing.text
    bad = await client.get("/app/jobs", params={"status": "nonsense", "type": "x"})
    assert bad.status_code == 200, "an unknown filter value is no filter"


async def test_someone_elses_job_is_a_404_page(portal_app: Any, pool: asyncpg.Pool) -> None:
    async with portal_client(portal_app) as owner, portal_client(portal_app) as other:
        first = await sign_up(owner)
        await grant(pool, first.user_id, 1)
        job = (await owner.post("/jobs", json=IMAGE_JOB, headers=first.headers)).json()
        await sign_up(other)
        page = await other.get(f"/app/jobs/{job['id']}")
        assert page.status_code == 404 and "No such job" in page.text
        assert "text/html" in page.headers["content-type"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_admin_pages_are_for_admins_only(portal_app: Any, pool: asyncpg.Pool) -> None:
    async with portal_client(portal_app) as http:
        plain = await sign_up(http)
        for path in ADMIN_PAGES:
            page = await http.get(path)
            assert page.status_code == 403, path
            assert "Admins only" in page.text and 'href="/app/admin"' not in page.text
        done = await execute(pool, c.SetAdmin(user_id=plain.user_id, is_admin=True, actor="test"))
        assert not hasattr(done, "code"), done
        for path in ADMIN_PAGES:
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text[:2000])
        users = await http.get("/app/admin/users", params={"q": plain.email[:5]})
        assert plain.email in users.text
        dashboard = await http.get("/app/admin")
        assert dashboard.text.count('<svg class="chart"') == 3
    token = await bearer(pool, "admin")
    async with portal_client(portal_app) as tool:
        assert (await tool.get("/app/admin/jobs", headers=token)).status_code == 200


async def test_pages_stay_out_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    # Stripe's return pages are pages; POST /billing/portal (CONTRACT) is an API route.
    pages = ("/", "/billing/success", "/billing/cancel")
    assert not [p for p in paths if p in pages or p.startswith(("/app", "/static"))]
    assert "/billing/portal" in paths
    css = await client.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    js = await client.get("/static/app.js")
    assert js.status_code == 200 and "x-csrf-token" in js.text
