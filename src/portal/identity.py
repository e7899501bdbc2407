"""Who is asking: a cookie session or a bearer token, and the guards that check it.

Roles: `user` acts on its own wallet; `admin` may do what an admin may; `service`
may read projections but never move credits; `auditor` reads the log, balances as of
any moment and the anchors (/audit), and every write is refused to it."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from portal.errors import ApiError
from portal.sessions import COOKIE, find_session
from rcc.config import Settings
from rcc.service.tokens import authenticate

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "x-csrf-token"


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    via: str  # "session" or "token"
    role: str  # "user", "admin", "service" or "auditor"
    user_id: str | None
    email: str = ""
    csrf_token: str | None = None
    service: str = ""  # a service token's name (its id if unnamed): the ledger shows it
    scopes: tuple[str, ...] = ()  # a service token's credits scopes (docs/HOLDS.md)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def _resolve(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity | None:
    pool: asyncpg.Pool = connection.app.state.pool
    settings: Settings = connection.app.state.settings
    header = connection.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "unauthorized", "Authorization must be 'Bearer <token>'")
        async with pool.acquire() as conn:
            token = await authenticate(conn, secret.strip())
        if token is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token")
        return Identity(
            via="token",
            role=token.role,
            user_id=token.user_id,
            service=token.service if token.role == "service" else "",
            scopes=token.scopes,
        )
    cookie = connection.cookies.get(COOKIE)
    if not cookie:
        return None
    async with pool.acquire() as conn:
        session = await find_session(conn, settings.session_secret, cookie)
    if session is None:
        return None
    return Identity(
        via="session",
        role="admin" if session.is_admin else "user",
        user_id=session.user_id,
        email=session.email,
        csrf_token=session.csrf_token,
    )


async def identity_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity | None:
    """The caller's identity, resolved once per request."""
    state = connection.scope.setdefault("state", {})
    if "identity" not in state:
        state["identity"] = await _resolve(connection)
    found: Identity | None = state["identity"]
    return found


def _check_csrf(connection: ASGIConnection[Any, Any, Any, Any], who: Identity) -> None:
    # Cookies ride along on cross-site requests; a header a foreign page cannot read
    # or set proves the request came from our own pages. Tokens need no such proof.
    if who.via == "session" and connection.scope.get("method") in UNSAFE:
        sent = connection.headers.get(CSRF_HEADER, "")
        if not sent or sent != who.csrf_token:
            raise ApiError(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header")


async def require_identity(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity:
    who = await identity_of(connection)
    if who is None:
        raise ApiError(401, "unauthorized", "sign in, or send Authorization: Bearer <token>")
    _check_csrf(connection, who)
    return who


async def signed_in_user(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a user (or an admin acting as itself) with a wallet."""
    who = await require_identity(connection)
    if who.user_id is None:
        raise ApiError(403, "forbidden", "this token is not tied to a user")


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: admins only (admin session or admin token)."""
    who = await require_identity(connection)
    if not who.is_admin:
        raise ApiError(403, "forbidden", "admins only")


async def admin_or_service_reader(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for admin reads: admins, and service tokens on safe methods only."""
    who = await require_identity(connection)
    if who.is_admin:
        return
    if who.role == "service" and connection.scope.get("method") not in UNSAFE:
        return
    raise ApiError(403, "forbidden", "admins only")


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.client
    return client.host if client else "unknown"


READ_ONLY_ROLES = frozenset({"auditor"})


async def auditor_or_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for /audit: auditors and admins."""
    who = await require_identity(connection)
    if who.role not in {"auditor", "admin"}:
        raise ApiError(403, "forbidden", "auditors and admins only")


async def read_only_roles_write_nothing(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """App-wide guard: a read-only token (auditor) is refused every unsafe method, on
    every route, even those that need no sign-in, so no new route can forget it."""
    if connection.scope.get("method") not in UNSAFE or not connection.headers.get("authorization"):
        return
    try:
        who = await identity_of(connection)
    except ApiError:
        return  # a bad token: the route's own rules answer it
    if who is not None and who.role in READ_ONLY_ROLES:
        raise ApiError(403, "read_only_role", f"{who.role} tokens may only read")
