"""GitLab admin sign-in, end to end against a real OpenID Connect provider.

tests/oidc/server.mjs runs npm's `oidc-provider` on 127.0.0.1 with GitLab's paths. The
portal talks to it over real HTTP (authorize, token with PKCE, JWKS, userinfo); nothing
is patched. The test plays the browser: it follows the portal's
redirect to the provider, signs an account in (or denies consent) through the server's
small JSON interaction endpoints, and brings the provider's redirect back to the
portal's callback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from portal.app import create_app
from rcc.config import load_settings

OIDC_DIR = Path(__file__).parent / "oidc"
PUBLIC_URL = "http://127.0.0.1:8000"
CLIENT_ID = "rcc-portal"
CLIENT_SECRET = "test-client-secret"
ALLOWLIST = "boss@example.com,@admins.example.com"

pytestmark = pytest.mark.xdist_group("gitlab_oidc")  # one provider per worker


@dataclass(frozen=True)
class Provider:
    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _install_provider() -> None:
    """`npm ci` once, for machines where .ci/run has not done it yet."""
    if (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    assert npm, "the GitLab sign-in tests need node and npm (see .ci/run)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll the discovery document until the provider answers (or give up with its log)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"oidc-provider exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"oidc-provider did not answer at {url}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """tests/oidc/server.mjs on a free port for this module's tests, stopped afterwards."""
    _install_provider()
    node = shutil.which("node")
    assert node, "the GitLab sign-in tests need node (see .ci/run)"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("oidc") / "server.log"
    env = {
        **os.environ,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": f"{PUBLIC_URL}/auth/gitlab/callback",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, "server.mjs", str(port)], cwd=OIDC_DIR, env=env, stdout=out, stderr=out
        )
    try:
        _wait_until_ready(process, url, log)
        yield Provider(url=url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def gitlab_app(provider: Provider, pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> Any:
    """The portal app configured for the provider as its GitLab."""
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_SESSION_SECRET": "test-session-secret",
            "RCC_ADMIN_ALLOWLIST": ALLOWLIST,
            "RCC_PUBLIC_URL": PUBLIC_URL,
            "GITLAB_URL": provider.url,
            "GITLAB_CLIENT_ID": CLIENT_ID,
            "GITLAB_CLIENT_SECRET": CLIENT_SECRET,
        }
    )
    return create_app(settings, pool=pool)


def browser(app: Any) -> httpx.AsyncClient:
    """A browser of the portal (ASGI, in the test's loop): a cookie jar of its own."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)


@pytest.fixture
async def portal(gitlab_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One browser of the portal."""
    async with browser(gitlab_app) as http:
        yield http


async def _follow_to_portal(browser: httpx.AsyncClient, answer: httpx.Response) -> str:
    """Follow the provider's redirects until one points back at the portal."""
    for _ in range(5):
        assert answer.is_redirect, (answer.status_code, answer.text)
        location = urljoin(str(answer.url), answer.headers["location"])
        if location.startswith(PUBLIC_URL):
            return location
        answer = await browser.get(location)
    raise AssertionError("the provider never sent the browser back")


async def gitlab_round_trip(portal: httpx.AsyncClient, account: str | None) -> str:
    """Start at /auth/gitlab, sign `account` in at the provider (None: deny consent)
    and return the callback URL the provider sends the browser back to."""
    start = await portal.get("/auth/gitlab")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient(timeout=10) as browser:  # a fresh browser at "GitLab"
        answer = await browser.get(start.headers["location"])
        assert answer.is_redirect, (answer.status_code, answer.text)
        interaction = urljoin(str(answer.url), answer.headers["location"])
        details = (await browser.get(interaction)).json()
        assert details["prompt"] == "login"
        if account is None:
            answer = await browser.post(f"{interaction}/deny")
        else:
            answer = await browser.post(f"{interaction}/login", data={"account": account})
        return await _follow_to_portal(browser, answer)


def with_query(url: str, **changes: str) -> str:
    """`url` with some query parameters replaced."""
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


async def sign_ins(owner: asyncpg.Connection) -> list[dict[str, Any]]:
    """The SignInAttempted events, oldest first, with their metadata."""
    rows = await owner.fetch(
        "SELECT data, metadata FROM events WHERE type = 'sign_in_attempted' ORDER BY position"
    )
    return [{**row["data"], "metadata": row["metadata"]} for row in rows]


async def admin_flag(owner: asyncpg.Connection, email: str) -> bool | None:
    """The user's is_admin from its stream head; None when no such user exists."""
    row = await owner.fetchrow(
        """SELECT coalesce((s.state->>'is_admin')::boolean, false) AS is_admin
           FROM user_emails e JOIN streams s ON s.stream_id = 'user-' || e.user_id::text
           WHERE e.email = $1""",
        email,
    )
    return None if row is None else bool(row["is_admin"])


async def gitlab_sessions(owner: asyncpg.Connection) -> int:
    found: int = await owner.fetchval("SELECT count(*) FROM sessions WHERE method = 'gitlab'")
    return found


async def assert_admitted(portal: httpx.AsyncClient, callback_url: str, email: str) -> None:
    """The callback admits `email`: a session cookie, and /me says admin."""
    done = await portal.get(callback_url)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/"
    assert "rcc_session" in done.cookies
    me = await portal.get("/me")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert me.json()["is_admin"] is True


async def test_authorize_redirects_to_gitlab_with_state_nonce_and_pkce(
    portal: httpx.AsyncClient, provider: Provider, owner: asyncpg.Connection
) -> None:
    start = await portal.get("/auth/gitlab")
    assert start.status_code == 302
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{provider.url}/oauth/authorize"
    )
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{PUBLIC_URL}/auth/gitlab/callback"
    assert query["code_challenge_method"] == "S256"
    assert set(query["scope"].split()) == {"openid", "email"}  # never read_user or api
    pending = await owner.fetchrow("SELECT * FROM oauth_states WHERE state = $1", query["state"])
    assert pending is not None and pending["used_at"] is None
    assert pending["nonce"] == query["nonce"]
    assert query["code_challenge"] != pending["verifier"]  # S256 sends the hash, not the secret
    # The pending sign-in belongs to this browser: a short-lived httpOnly cookie for the
    # sign-in paths only, whose value is not the state (the state is its HMAC).
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("rcc_gitlab_signin=")
    assert all(part in cookie for part in ("HttpOnly", "Path=/auth/gitlab", "Max-Age=600"))
    assert query["state"] not in cookie


async def test_allowlisted_admin_is_admitted(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    await assert_admitted(portal, callback, "boss@example.com")
    assert await gitlab_sessions(owner) == 1
    [attempt] = await sign_ins(owner)
    assert attempt["method"] == "gitlab"
    assert attempt["outcome"] == "admitted"
    assert attempt["email"] == "boss@example.com"
    assert attempt["ip"] == "127.0.0.1"
    assert attempt["reason"]
    assert attempt["user_id"]


async def test_domain_allowlist_links_the_existing_user(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    registered = await portal.post(
        "/auth/register", json={"email": "ops@admins.example.com", "password": "a long passphrase"}
    )
    assert registered.status_code == 201, registered.text
    portal.cookies.clear()
    callback = await gitlab_round_trip(portal, "2")
    await assert_admitted(portal, callback, "ops@admins.example.com")
    assert (await portal.get("/me")).json()["id"] == registered.json()["id"]


async def test_account_without_an_address_is_a_clear_refusal(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "5")  # its userinfo carries no email
    refused = await portal.get(callback)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "email_unknown"
    assert "primary, verified email" in refused.json()["detail"]
    assert "rcc_session" not in refused.cookies
    assert await admin_flag(owner, "quiet@admins.example.com") is None
    [attempt] = await sign_ins(owner)
    assert (attempt["outcome"], attempt["ip"]) == ("refused", "127.0.0.1")
    assert "address" in attempt["reason"]


async def test_callback_completed_in_another_browser_is_refused(
    portal: httpx.AsyncClient, gitlab_app: Any, owner: asyncpg.Connection
) -> None:
    """Login CSRF (RFC 9700 §4.7): an attacker starts a sign-in in their own browser and
    gets the victim's browser to open the callback URL. The victim's browser lacks the
    cookie of that sign-in, so the portal refuses it and the state stays unspent."""
    callback = await gitlab_round_trip(portal, "1")  # started in `portal`'s cookie jar
    async with browser(gitlab_app) as victim:
        forced = await victim.get(callback)
        assert forced.status_code == 400, forced.text
        assert forced.json()["error"] == "invalid_state"
        assert "rcc_session" not in forced.cookies
        assert (await victim.get("/me")).status_code == 401
        # Even a victim who began a sign-in of their own cannot be handed this one.
        assert (await victim.get("/auth/gitlab")).status_code == 302
        assert (await victim.get(callback)).status_code == 400
    assert await gitlab_sessions(owner) == 0
    assert [a["outcome"] for a in await sign_ins(owner)] == ["failed", "failed"]
    await assert_admitted(portal, callback, "boss@example.com")  # its own browser still can


async def test_other_user_is_refused(portal: httpx.AsyncClient, owner: asyncpg.Connection) -> None:
    registered = await portal.post(
        "/auth/register", json={"email": "plain@example.org", "password": "a long passphrase"}
    )
    assert registered.status_code == 201
    portal.cookies.clear()
    callback = await gitlab_round_trip(portal, "3")
    refused = await portal.get(callback)
    assert refused.status_code == 403
    assert refused.json()["error"] == "not_allowlisted"
    assert "rcc_session" not in refused.cookies
    assert (await portal.get("/me")).status_code == 401
    assert await admin_flag(owner, "plain@example.org") is False
    assert await gitlab_sessions(owner) == 0
    [attempt] = await sign_ins(owner)
    assert attempt["outcome"] == "refused"
    assert attempt["email"] == "plain@example.org"
    assert attempt["ip"] == "127.0.0.1"
    assert "ALLOWLIST" in attempt["reason"]


async def test_unverified_address_is_refused_even_on_an_allowlisted_domain(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "4")
    refused = await portal.get(callback)
    assert refused.status_code == 403
    assert refused.json()["error"] == "email_unverified"
    assert await admin_flag(owner, "mallory@admins.example.com") is None  # not even created
    assert await gitlab_sessions(owner) == 0
    [attempt] = await sign_ins(owner)
    assert (attempt["outcome"], attempt["ip"]) == ("refused", "127.0.0.1")
    assert "not verified" in attempt["reason"]


async def test_denied_consent(portal: httpx.AsyncClient, owner: asyncpg.Connection) -> None:
    callback = await gitlab_round_trip(portal, None)
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    denied = await portal.get(callback)
    assert denied.status_code == 401
    assert denied.json()["error"] == "access_denied"
    assert await gitlab_sessions(owner) == 0
    [attempt] = await sign_ins(owner)
    assert (attempt["outcome"], attempt["ip"]) == ("failed", "127.0.0.1")
    assert "access_denied" in attempt["reason"]


async def test_wrong_state_is_refused_and_spends_nothing(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    for forged in (with_query(callback, state="forged"), with_query(callback, state="")):
        wrong = await portal.get(forged)
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_state"
        assert "rcc_session" not in wrong.cookies
    assert await gitlab_sessions(owner) == 0
    attempts = await sign_ins(owner)
    assert [a["outcome"] for a in attempts] == ["failed", "failed"]
    assert all(a["ip"] == "127.0.0.1" and "state" in a["reason"] for a in attempts)
    await assert_admitted(portal, callback, "boss@example.com")  # the real one still works


async def test_expired_state_is_refused(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    await owner.execute("UPDATE oauth_states SET created_at = now() - interval '11 minutes'")
    late = await portal.get(callback)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_state"
    assert await gitlab_sessions(owner) == 0


async def test_answer_from_another_issuer_is_refused(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    assert parse_qs(urlsplit(callback).query)["iss"]  # oidc-provider sends RFC 9207's iss
    mixed_up = await portal.get(with_query(callback, iss="https://evil.example.com"))
    assert mixed_up.status_code == 400
    assert mixed_up.json()["error"] == "invalid_issuer"
    assert await gitlab_sessions(owner) == 0


async def test_replayed_code_fails_and_changes_nothing(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    browser_cookie = portal.cookies["rcc_gitlab_signin"]
    await assert_admitted(portal, callback, "boss@example.com")
    assert "rcc_gitlab_signin" not in portal.cookies  # used up with the sign-in
    portal.cookies.clear()
    portal.cookies.set("rcc_gitlab_signin", browser_cookie)  # as if it were kept
    changes = "SELECT count(*) FROM events WHERE type <> 'sign_in_attempted'"
    changes_before = await owner.fetchval(changes)

    replay = await portal.get(callback)  # the same callback URL again: its state is spent
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_state"

    # Even with the state made usable again, GitLab (oidc-provider) refuses a used code.
    await owner.execute("UPDATE oauth_states SET used_at = NULL")
    replay = await portal.get(callback)
    assert replay.status_code == 400
    assert replay.json()["error"] == "gitlab_exchange_failed"

    assert "rcc_session" not in replay.cookies
    assert (await portal.get("/me")).status_code == 401
    assert await gitlab_sessions(owner) == 1
    assert await owner.fetchval(changes) == changes_before  # no user, no admin change
    attempts = await sign_ins(owner)
    assert [a["outcome"] for a in attempts] == ["admitted", "failed", "failed"]
    assert "invalid_grant" in attempts[-1]["reason"]
    assert all(a["ip"] == "127.0.0.1" for a in attempts)
    assert all(a["metadata"]["client_ip"] == "127.0.0.1" for a in attempts)


@pytest.mark.parametrize(
    ("column", "status", "reason"),
    [
        ("verifier", 400, "invalid_grant"),  # PKCE: GitLab (oidc-provider) checks it
        ("nonce", 502, "ID token"),  # the nonce in the ID token: the portal checks it
    ],
)
async def test_pkce_verifier_and_nonce_are_checked(
    portal: httpx.AsyncClient, owner: asyncpg.Connection, column: str, status: int, reason: str
) -> None:
    callback = await gitlab_round_trip(portal, "1")
    await owner.execute(
        f"UPDATE oauth_states SET {column} = 'not-the-one-sent-to-gitlab-xxxxxxxxxxxxxxxxxxxxxxx'"
    )
    answer = await portal.get(callback)
    assert answer.status_code == status
    assert answer.json()["error"] == "gitlab_exchange_failed"
    assert await gitlab_sessions(owner) == 0
    assert await admin_flag(owner, "boss@example.com") is None
    [attempt] = await sign_ins(owner)
    assert attempt["outcome"] == "failed"
    assert reason in attempt["reason"]


async def test_callback_without_a_pending_sign_in(
    portal: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    answer = await portal.get("/auth/gitlab/callback", params={"code": "x", "state": "nope"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_state", "detail": answer.json()["detail"]}
    [attempt] = await sign_ins(owner)
    assert (attempt["outcome"], attempt["ip"]) == ("failed", "127.0.0.1")
