"""Server-side sessions in PostgreSQL. The cookie carries a random secret; only its hash
is stored, a new one is issued at every sign-in (no fixation), and logout ends it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta

import asyncpg
import msgspec

COOKIE = "rcc_session"
LIFETIME = timedelta(days=7)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id_hash: bytes
    user_id: str
    csrf_token: str
    is_admin: bool
    email: str


def _digest(secret: str, key: str = "") -> bytes:
    # Keyed with RCC_SESSION_SECRET: a copy of the table alone cannot be matched
    # against cookies, even with the cookie values at hand from elsewhere.
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).digest()


async def open_session(
    conn: asyncpg.Connection,
    key: str,
    user_id: str,
    method: str,
    previous_secret: str | None,
) -> tuple[str, str]:
    """End the session the browser came with (if any) and open a new one.

    Returns (cookie secret, CSRF token)."""
    if previous_secret:
        await end_session(conn, key, previous_secret)
    secret = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    await conn.execute(
        """INSERT INTO sessions (id_hash, user_id, csrf_token, method, expires_at)
           VALUES ($1, $2, $3, $4, now() + $5::interval)""",
        _digest(secret, key),
        uuid.UUID(user_id),
        csrf,
        method,
        LIFETIME,
    )
    return secret, csrf


async def end_session(conn: asyncpg.Connection, key: str, secret: str) -> None:
    await conn.execute(
        "UPDATE sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL",
        _digest(secret, key),
    )


async def find_session(conn: asyncpg.Connection, key: str, secret: str) -> Session | None:
    """The live session behind a cookie secret, with the user's current admin flag."""
    row = await conn.fetchrow(
        """SELECT s.id_hash, s.user_id, s.csrf_token,
                  coalesce((u.state->>'is_admin')::boolean, false) AS is_admin,
                  coalesce(u.state->>'email', '') AS email
             FROM sessions s
             LEFT JOIN streams u ON u.stream_id = 'user-' || s.user_id::text
            WHERE s.id_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now()""",
        _digest(secret, key),
    )
    if row is None:
        return None
    return Session(
        id_hash=bytes(row["id_hash"]),
        user_id=str(row["user_id"]),
        csrf_token=row["csrf_token"],
        is_admin=row["is_admin"],
        email=row["email"],
    )
