"""GET /auth/gitlab and /auth/gitlab/callback: admin sign-in with GitLab (OpenID Connect).

The authorization code flow with PKCE (S256), state and nonce, against `GITLAB_URL`
(gitlab.com or a self-hosted GitLab: only the base URL differs). A pending sign-in
lives in `oauth_states`, usable once and for ten minutes, and belongs to the browser
that started it: its state is an HMAC of a secret kept in a short-lived httpOnly
cookie (RFC 9700 §4.7), so a callback URL completed in another browser is refused.
The ID token is checked (signature, issuer, audience, nonce); the address comes from
/oauth/userinfo (scope `email`: GitLab puts the primary address there) and only a
verified address on RCC_ADMIN_ALLOWLIST is admitted; no address is a refusal. (We
never call /api/v4/user: it needs the `read_user` scope, far more than sign-in needs.)
Every attempt, admitted or not, becomes a SignInAttempted event (the operations log)
with the client ip and the reason.

On success the browser is sent to `/` with a fresh session cookie (303); every other
outcome is a JSON error. No token, code or secret is ever logged or recorded."""

from __future__ import annotations

import base64
import hmac
import warnings
from typing import Annotated, Any

import asyncpg
import httpx
import msgspec
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Request, get
from litestar.datastructures import Cookie, State
from litestar.params import FromQuery, QueryParameter
from litestar.response import Redirect

from portal.errors import ApiError
from portal.identity import client_ip
from portal.responses import errors
from portal.routes.auth import login_limit, start_session
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.domain.user import normalise_email
from rcc.service.accounts import ensure_user, record_sign_in
from rcc.service.bus import execute
from rcc.service.commands import SetAdmin

with warnings.catch_warnings():
    # Authlib 1.9 warns at import that it runs on plain httpx rather than its fork httpx2;
    # the API we use is the same on both. Drop this once httpx2 is a dependency. (Importing
    # authlib.deprecate above first matters: it installs an "always" filter of its own.)
    warnings.filterwarnings(
        "ignore", "The httpx module is deprecated", category=AuthlibDeprecationWarning
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

SCOPE = "openid email"  # the least GitLab needs to tell us who signs in
PENDING_MINUTES = 10
BROWSER_COOKIE = "rcc_gitlab_signin"  # binds a pending sign-in to the browser that began it
HTTP_TIMEOUT_S = 10.0
METHOD = "gitlab"


class SignInStopped(Exception):
    """An attempt that ends without a session: the HTTP answer and the logged reason."""

    def __init__(
        self, status: int, code: str, reason: str, *, email: str = "", outcome: str = "failed"
    ) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.email, self.outcome = email, outcome

    @classmethod
    def refused(cls, code: str, reason: str, email: str) -> SignInStopped:
        """We said no (403): the sign-in worked, but this address may not be an admin."""
        return cls(403, code, reason, email=email, outcome="refused")


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A sign-in between the redirect to GitLab and its callback."""

    state: str
    nonce: str
    verifier: str


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The part of GitLab's /oauth/userinfo we use."""

    sub: str
    email: str | None = None
    email_verified: bool = False


def _redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url}/auth/gitlab/callback"


def _oauth_client(settings: Settings) -> AsyncOAuth2Client:
    """authlib's httpx client for this GitLab, with PKCE S256."""
    return AsyncOAuth2Client(
        client_id=settings.gitlab_client_id,
        client_secret=settings.gitlab_client_secret,
        scope=SCOPE,
        redirect_uri=_redirect_uri(settings),
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_S,
    )


def _state_for(settings: Settings, browser_secret: str) -> str:
    """The OAuth state of the sign-in this browser secret began (keyed HMAC, so the state
    in a URL says nothing about the cookie, and no one can pair one with another)."""
    mac = hmac.new(
        settings.session_secret.encode(), b"gitlab-state:" + browser_secret.encode(), "sha256"
    )
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def _browser_cookie(settings: Settings, value: str, max_age: int) -> Cookie:
    # SameSite=Lax: GitLab sends the browser back with a top-level GET, which carries it.
    return Cookie(
        key=BROWSER_COOKIE,
        value=value,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=max_age,
        path="/auth/gitlab",
    )


def _check_browser(settings: Settings, request: Request[Any, Any, Any], state: str | None) -> None:
    """Refuse a callback this browser did not start (before the pending sign-in is spent)."""
    secret = request.cookies.get(BROWSER_COOKIE, "")
    if not secret or not state or not hmac.compare_digest(_state_for(settings, secret), state):
        raise SignInStopped(400, "invalid_state", "this browser did not start that sign-in (state)")


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


@get("/auth/gitlab", tags=["auth"], status_code=302, responses=errors(404, 429))
async def authorize(state: State, request: Request[Any, Any, Any]) -> Redirect:
    """Start an admin sign-in: remember state, nonce and PKCE verifier, go to GitLab."""
    settings: Settings = state.settings
    await login_limit(state, request, "gitlab sign-in")  # h13: a policy
    if not settings.gitlab_client_id:
        raise ApiError(404, "gitlab_not_configured", "GitLab sign-in is not set up here")
    browser_secret = generate_token(32)
    pending = Pending(
        state=_state_for(settings, browser_secret),
        nonce=generate_token(32),
        verifier=generate_token(64),
    )
    async with _pool(state).acquire() as conn:
        await conn.execute(
            "INSERT INTO oauth_states (state, nonce, verifier) VALUES ($1, $2, $3)",
            pending.state,
            pending.nonce,
            pending.verifier,
        )
    async with _oauth_client(settings) as client:
        url, _ = client.create_authorization_url(
            f"{settings.gitlab_url}/oauth/authorize",
            state=pending.state,
            nonce=pending.nonce,
            code_verifier=pending.verifier,
        )
    cookie = _browser_cookie(settings, browser_secret, PENDING_MINUTES * 60)
    return Redirect(url, status_code=302, cookies=[cookie])


@get(
    "/auth/gitlab/callback",
    tags=["auth"],
    status_code=303,
    responses=errors(400, 401, 403, 422, 429, 502),
)
async def callback(
    state: State,
    request: Request[Any, Any, Any],
    code: FromQuery[str | None] = None,
    oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
    error: FromQuery[str | None] = None,
    iss: FromQuery[str | None] = None,
) -> Redirect:
    """Finish a sign-in GitLab sent back: admit an allowlisted, verified address as admin."""
    settings: Settings = state.settings
    await login_limit(state, request, "gitlab sign-in")  # h13: a policy
    pool, ip = _pool(state), client_ip(request)
    try:
        _check_browser(settings, request, oauth_state)
        email = await _signed_in_email(pool, settings, oauth_state, code, error, iss)
        user_id = await _admit(pool, email, ip)
    except SignInStopped as stop:
        await record_sign_in(pool, METHOD, stop.email, stop.outcome, stop.reason, None, ip)
        raise ApiError(stop.status, stop.code, stop.reason) from None
    except Exception:
        await record_sign_in(pool, METHOD, "", "failed", "internal error", None, ip)
        raise
    await record_sign_in(pool, METHOD, email, "admitted", "on RCC_ADMIN_ALLOWLIST", user_id, ip)
    signed_in = await start_session(state, request, user_id, email, METHOD)
    spent = _browser_cookie(settings, "", 0)  # the pending sign-in is used up
    return Redirect("/", status_code=303, cookies=[*signed_in.cookies, spent])


async def _signed_in_email(
    pool: asyncpg.Pool,
    settings: Settings,
    oauth_state: str | None,
    code: str | None,
    error: str | None,
    iss: str | None,
) -> str:
    """The steps of a callback up to an admissible address; any refusal raises SignInStopped."""
    pending = await _take_pending(pool, oauth_state)
    if error:
        raise SignInStopped(401, "access_denied", f"GitLab answered {error[:64]!r}")
    if iss is not None and iss != settings.gitlab_url:  # RFC 9207: mix-up defence
        raise SignInStopped(400, "invalid_issuer", "the answer came from another issuer")
    if not code:
        raise SignInStopped(400, "invalid_request", "the callback carries no code")
    email = await _verified_email(settings, pending, code)
    _check_allowlist(settings, email)
    return email


async def _take_pending(pool: asyncpg.Pool, oauth_state: str | None) -> Pending:
    """Use up the pending sign-in of this state: unknown, used or expired ones fail."""
    if oauth_state:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                """UPDATE oauth_states SET used_at = now()
                   WHERE state = $1 AND used_at IS NULL
                     AND created_at > now() - make_interval(mins => $2)
                   RETURNING state, nonce, verifier""",
                oauth_state,
                PENDING_MINUTES,
            )
        if row is not None:
            return Pending(state=row["state"], nonce=row["nonce"], verifier=row["verifier"])
    raise SignInStopped(400, "invalid_state", "unknown, expired or already used state")


async def _verified_email(settings: Settings, pending: Pending, code: str) -> str:
    """Exchange the code (with the PKCE verifier), check the ID token, read the address."""
    async with _oauth_client(settings) as client:
        try:
            token = await client.fetch_token(
                f"{settings.gitlab_url}/oauth/token", code=code, code_verifier=pending.verifier
            )
        except OAuthError as refused:
            reason = f"GitLab refused the code ({refused.error})"
            raise SignInStopped(400, "gitlab_exchange_failed", reason) from None
        except (httpx.HTTPError, ValueError) as broken:
            reason = f"token request failed ({type(broken).__name__})"
            raise SignInStopped(502, "gitlab_exchange_failed", reason) from None
        try:
            sub = await _id_token_subject(client, settings, str(token.get("id_token", "")), pending)
            return await _read_email(client, settings, sub)
        except (httpx.HTTPError, msgspec.ValidationError, msgspec.DecodeError) as broken:
            reason = f"reading the GitLab user failed ({type(broken).__name__})"
            raise SignInStopped(502, "gitlab_exchange_failed", reason) from None


async def _id_token_subject(
    client: AsyncOAuth2Client, settings: Settings, id_token: str, pending: Pending
) -> str:
    """The ID token's subject, once its signature, issuer, audience, expiry and nonce hold."""
    jwks_url = f"{settings.gitlab_url}/oauth/discovery/keys"
    keys = await client.request("GET", jwks_url, withhold_token=True)
    keys.raise_for_status()
    try:
        decoded = jwt.decode(id_token, KeySet.import_key_set(keys.json()), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": settings.gitlab_url},
            aud={"essential": True, "value": settings.gitlab_client_id},
            nonce={"essential": True, "value": pending.nonce},
            sub={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as bad:
        reason = f"invalid ID token ({type(bad).__name__})"
        raise SignInStopped(502, "gitlab_exchange_failed", reason) from None
    return str(decoded.claims["sub"])


async def _read_email(client: AsyncOAuth2Client, settings: Settings, sub: str) -> str:
    """The verified address of `sub`, from userinfo; none there is a refusal (403)."""
    answer = await client.get(f"{settings.gitlab_url}/oauth/userinfo")
    answer.raise_for_status()
    info = msgspec.json.decode(answer.content, type=UserInfo)
    if info.sub != sub:
        raise SignInStopped(502, "gitlab_exchange_failed", "userinfo is about someone else")
    if not info.email:
        raise SignInStopped.refused(
            "email_unknown",
            "GitLab did not tell this account's address (it needs a primary, verified email)",
            "",
        )
    return _verified(info.email, info.email_verified)


def _verified(email: str, verified: bool) -> str:
    """The normalised address, if GitLab vouches for it; an unverified one proves nothing."""
    normal = normalise_email(email)
    if normal is None or normal.count("@") != 1:
        raise SignInStopped.refused("email_unknown", "GitLab gave no usable address", email)
    if not verified:
        raise SignInStopped.refused(
            "email_unverified", "the GitLab address is not verified", normal
        )
    return normal


def _check_allowlist(settings: Settings, email: str) -> None:
    """Admit exact addresses and `@domain` entries of RCC_ADMIN_ALLOWLIST."""
    domain = "@" + email.partition("@")[2]
    if email in settings.admin_allowlist or domain in settings.admin_allowlist:
        return
    raise SignInStopped.refused(
        "not_allowlisted", "this address is not on RCC_ADMIN_ALLOWLIST", email
    )


async def _admit(pool: asyncpg.Pool, email: str, ip: str) -> str:
    """Link the address to its user (registering it if new) and make that user an admin."""
    user_id = await ensure_user(pool, email)
    if isinstance(user_id, DomainError):
        reason = f"cannot register the address: {user_id.detail}"
        raise SignInStopped(422, "invalid", reason, email=email)
    done = await execute(
        pool,
        SetAdmin(user_id=user_id, is_admin=True, actor=METHOD),
        metadata={"actor": email, "client_ip": ip, "via": METHOD},
    )
    if isinstance(done, DomainError):
        raise SignInStopped(422, "invalid", f"cannot grant admin: {done.detail}", email=email)
    return user_id
