"""Accounts and cookie sessions: register, login, logout, fixation, CSRF, rate limits."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from rcc.config import Settings
from tests.conftest import portal_client
from tests.portal_helpers import IMAGE_JOB, PASSWORD, bearer, grant, sign_up


async def test_register_signs_in_with_an_httponly_lax_cookie(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "New@Example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    me = (await client.get("/me")).json()
    assert me["email"] == "new@example.com" and me["balance_rcc"] == 0 and not me["is_admin"]


async def test_duplicate_email_and_weak_password_are_clear_errors(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client, "twice@example.com")
    again = await client.post(
        "/auth/register", json={"email": "TWICE@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    weak = await client.post("/auth/register", json={"email": "w@example.com", "password": "short"})
    assert weak.status_code == 422 and weak.json()["error"] == "weak_password"
    bad = await client.post("/auth/register", json={"email": "not-an-email", "password": PASSWORD})
    assert bad.status_code == 422 and "not an email" in bad.json()["detail"]


async def test_login_rotates_the_session_id_and_ends_the_old_one(
    portal_app: Any, owner: asyncpg.Connection
) -> None:
    async with portal_client(portal_app) as browser:
        member = await sign_up(browser)
        planted = browser.cookies.get("rcc_session")
        response = await browser.post(
            "/auth/login", json={"email": member.email, "password": PASSWORD}
        )
        assert response.status_code == 200
        fresh = browser.cookies.get("rcc_session")
        assert fresh and fresh != planted
        # The cookie an attacker might have planted before sign-in is now dead.
    async with portal_client(portal_app) as attacker:
        attacker.cookies.set("rcc_session", planted or "")
        assert (await attacker.get("/me")).status_code == 401
    live = await owner.fetchval("SELECT count(*) FROM sessions WHERE ended_at IS NULL")
    assert live == 1


async def test_wrong_password_is_401_and_logged(
    client: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    member = await sign_up(client)
    wrong = await client.post(
        "/auth/login", json={"email": member.email, "password": "nope-nope-nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    unknown = await client.post(
        "/auth/login", json={"email": "ghost@example.com", "password": PASSWORD}
    )
    assert unknown.status_code == 401 and unknown.json() == wrong.json()
    outcomes = [
        r["data"]["outcome"]
        for r in await owner.fetch(
            "SELECT data FROM events WHERE type = 'sign_in_attempted' ORDER BY position"
        )
    ]
    assert outcomes == ["refused", "refused"]


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    member = await sign_up(client)
    cookie = client.cookies.get("rcc_session")
    assert (await client.post("/auth/logout", headers=member.headers)).status_code == 204
    client.cookies.set("rcc_session", cookie or "")
    assert (await client.get("/me")).status_code == 401
    assert member.user_id


async def test_cookie_requests_need_the_csrf_header_tokens_do_not(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 5)
    forged = await client.post("/jobs", json=IMAGE_JOB)
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
    wrong = await client.post("/jobs", json=IMAGE_JOB, headers={"x-csrf-token": "guess"})
    assert wrong.status_code == 403
    assert (await client.get("/me")).json()["balance_rcc"] == 5  # nothing was charged
    ok = await client.post("/jobs", json=IMAGE_JOB, headers=member.headers)
    assert ok.status_code == 201
    token = await bearer(pool, "user", member.user_id)
    client.cookies.clear()
    assert (await client.post("/jobs", json=IMAGE_JOB, headers=token)).status_code == 201


async def test_brute_force_login_hits_the_rate_limit(portal_app: Any, settings: Settings) -> None:
    limit = settings.rate_limits.login_per_min
    async with portal_client(portal_app, ip="10.9.8.7") as http:
        codes = [
            (
                await http.post(
                    "/auth/login", json={"email": "x@example.com", "password": PASSWORD}
                )
            ).status_code
            for _ in range(limit + 2)
        ]
        assert codes[:limit] == [401] * limit
        assert codes[limit:] == [429, 429]
        limited = await http.post(
            "/auth/login", json={"email": "x@example.com", "password": PASSWORD}
        )
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    async with portal_client(portal_app, ip="10.9.8.8") as other:
        answer = await other.post(
            "/auth/login", json={"email": "x@example.com", "password": PASSWORD}
        )
        assert answer.status_code == 401, "another address has its own budget"


async def test_bad_bearer_tokens_are_401(client: httpx.AsyncClient) -> None:
    for header in ("Bearer rcc_nope", "Basic abc", "Bearer "):
        response = await client.get("/me", headers={"authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"] == "unauthorized"
