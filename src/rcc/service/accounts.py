"""Finding users by email, and creating them on first use (tokens, admin sign-in)."""

from __future__ import annotations

import asyncpg

from rcc.domain.errors import Conflict, DomainError
from rcc.domain.lots import LotPolicy
from rcc.domain.user import normalise_email
from rcc.service.bus import execute
from rcc.service.commands import RecordSignIn, RegisterUser


async def user_id_by_email(conn: asyncpg.Connection, email: str) -> str | None:
    normal = normalise_email(email)
    if normal is None:
        return None
    found = await conn.fetchval("SELECT user_id FROM user_emails WHERE email = $1", normal)
    return str(found) if found else None


async def ensure_user(
    pool: asyncpg.Pool, email: str, signup_grant_rcc: int = 0, lots: LotPolicy | None = None
) -> str | DomainError:
    """The id of the user with this email, registering it first if there is none."""
    async with pool.acquire() as conn:
        if found := await user_id_by_email(conn, email):
            return found
    done = await execute(
        pool, RegisterUser(email=email, signup_grant_rcc=signup_grant_rcc, lots=lots or LotPolicy())
    )
    if isinstance(done, Conflict):  # registered by someone else meanwhile
        async with pool.acquire() as conn:
            if found := await user_id_by_email(conn, email):
                return found
    if isinstance(done, DomainError):
        return done
    return str(done.result["user_id"])


async def record_sign_in(
    pool: asyncpg.Pool,
    method: str,
    email: str,
    outcome: str,
    reason: str,
    user_id: str | None,
    ip: str | None,
) -> None:
    """Append a SignInAttempted event (its own stream: no contention between attempts)."""
    await execute(
        pool,
        RecordSignIn(
            method=method, email=email, outcome=outcome, reason=reason, user_id=user_id, ip=ip
        ),
        metadata={"actor": email, "client_ip": ip},
    )
