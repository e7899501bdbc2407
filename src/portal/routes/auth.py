"""POST /auth/register, /auth/login, /auth/logout: password accounts and cookie sessions."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Request, Response, post
from litestar.datastructures import Cookie, State
from litestar.params import JSONBody

from portal.errors import ApiError, domain_response
from portal.identity import client_ip, identity_of, require_identity
from portal.origin import same_origin
from portal.passwords import hash_password, password_problem, verify_password
from portal.ratelimit import Limit, hit
from portal.responses import BODY, errors, no_content
from portal.schemas import Credentials, SignedIn
from portal.sessions import COOKIE, LIFETIME, end_session, open_session
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.policy.grants import login_per_min, register_per_hour, signup_terms
from rcc.service.accounts import record_sign_in, user_id_by_email
from rcc.service.bus import execute
from rcc.service.commands import RegisterUser


async def _limit(
    state: State, request: Request[Any, Any, Any], what: str, hits: int, window_s: int = 60
) -> None:
    """429 once this address has made more than `hits` attempts of `what` in the window."""
    pool: asyncpg.Pool = state.pool
    # Windows other than a minute get buckets of their own: the rows are keyed by
    # (bucket, window start), and an hour starts on a minute too.
    bucket = what if window_s == 60 else f"{what}/{window_s}s"
    async with pool.acquire() as conn:
        wait = await hit(conn, f"{bucket}:{client_ip(request)}", Limit(hits, window_s))
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what} attempts from this address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )


async def login_limit(state: State, request: Request[Any, Any, Any], what: str) -> None:
    """The sign-in limit per address and minute, as the policy says now (h13)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        per_min = await login_per_min(conn, state.settings)
    await _limit(state, request, what, per_min)


def session_cookie(settings: Settings, secret: str) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=secret,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=int(LIFETIME.total_seconds()),
        path="/",
    )


async def start_session(
    state: State, request: Request[Any, Any, Any], user_id: str, email: str, method: str
) -> Response[SignedIn]:
    """A fresh session for this user (the old cookie's session ends: no fixation)."""
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        secret, csrf = await open_session(
            conn, settings.session_secret, user_id, method, request.cookies.get(COOKIE)
        )
        is_admin = bool(
            await conn.fetchval(
                "SELECT (state->>'is_admin')::boolean FROM streams WHERE stream_id = $1",
                f"user-{user_id}",
            )
        )
    body = SignedIn(id=user_id, email=email, is_admin=is_admin, csrf_token=csrf)
    return Response(body, status_code=200, cookies=[session_cookie(settings, secret)])


@post(
    "/auth/register",
    status_code=201,
    tags=["auth"],
    guards=[same_origin],
    responses=errors(*BODY, 403, 409, 422, 429),
)
async def register(
    data: JSONBody[Credentials], state: State, request: Request[Any, Any, Any]
) -> Response[SignedIn]:
    """Create a password account (with the sign-up grant, if any) and sign in.

    A taken address is a 409: registration signs in at once, so it cannot pretend to
    succeed. What keeps it from being an address oracle is the hourly limit per client
    address on top of the per-minute one (docs/SECURITY.md, finding 11)."""
    settings: Settings = state.settings
    await _limit(state, request, "register", settings.rate_limits.register_per_min)
    async with state.pool.acquire() as conn:  # h6: these three are policies now
        per_hour = await register_per_hour(conn, settings)
        signup_grant, lots = await signup_terms(conn, settings)
    await _limit(state, request, "register", per_hour, 3600)
    if problem := password_problem(data.password):
        raise ApiError(422, "weak_password", problem)
    done = await execute(
        state.pool,
        RegisterUser(email=data.email, signup_grant_rcc=signup_grant, lots=lots),
        metadata={"actor": "self", "client_ip": client_ip(request)},
    )
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    user_id = str(done.result["user_id"])
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO credentials (user_id, password_hash) VALUES ($1, $2)",
            uuid.UUID(user_id),
            hash_password(data.password),
        )
    response = await start_session(state, request, user_id, str(done.result["email"]), "password")
    response.status_code = 201
    return response


@post(
    "/auth/login",
    status_code=200,
    tags=["auth"],
    guards=[same_origin],
    responses=errors(*BODY, 401, 403, 429),
)
async def login(
    data: JSONBody[Credentials], state: State, request: Request[Any, Any, Any]
) -> Response[SignedIn]:
    """Sign in with email and password; every attempt reaches the operations log."""
    await login_limit(state, request, "login")  # h13: the ratelimit.login_per_min policy
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        user_id = await user_id_by_email(conn, data.email)
        stored = None
        if user_id:
            stored = await conn.fetchval(
                "SELECT password_hash FROM credentials WHERE user_id = $1", uuid.UUID(user_id)
            )
    ip = client_ip(request)
    if not verify_password(stored, data.password) or user_id is None:
        await record_sign_in(
            pool, "password", data.email, "refused", "wrong email or password", None, ip
        )
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    await record_sign_in(pool, "password", data.email, "admitted", "", user_id, ip)
    return await start_session(state, request, user_id, data.email.strip().lower(), "password")


@post(
    "/auth/logout",
    status_code=204,
    tags=["auth"],
    responses={**no_content("Signed out; the session cookie is cleared"), **errors(403)},
)
async def logout(state: State, request: Request[Any, Any, Any]) -> Response[None]:
    """End the cookie session (harmless without one). A live session must send its CSRF
    header, like every unsafe request: another site must not sign our users out."""
    if await identity_of(request) is not None:
        await require_identity(request)  # the CSRF check of cookie sessions
    cookie = request.cookies.get(COOKIE)
    if cookie:
        pool: asyncpg.Pool = state.pool
        async with pool.acquire() as conn:
            await end_session(conn, state.settings.session_secret, cookie)
    response: Response[None] = Response(None, status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response
