"""Bearer tokens for scripts and services. Only a hash of the secret is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg
import msgspec

ROLES = ("admin", "service", "user", "auditor")
# What a service token may do with the credits API (docs/HOLDS.md); other roles get none.
SCOPES = ("credits:read", "credits:hold", "credits:usage")
_PREFIX = "rcc_"


class TokenIdentity(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    role: str
    user_id: str | None
    name: str = ""
    scopes: tuple[str, ...] = ()

    @property
    def service(self) -> str:
        """How the ledger names this token's service: its name, else its id."""
        return self.name or self.token_id


def parse_scopes(text: str) -> tuple[str, ...]:
    """`a,b` as scopes; ValueError naming an unknown one."""
    scopes = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    if unknown := [scope for scope in scopes if scope not in SCOPES]:
        raise ValueError(f"unknown scope {unknown[0]!r}; one of {', '.join(SCOPES)}")
    return scopes


def _digest(secret: str) -> bytes:
    # The secret is 256 random bits, so a fast hash is enough (no dictionary to try).
    return hashlib.sha256(secret.encode()).digest()


async def create_token(
    conn: asyncpg.Connection,
    role: str,
    user_id: str | None,
    name: str = "",
    scopes: tuple[str, ...] = (),
) -> tuple[str, str]:
    """Store a new token; return (token id, the bearer secret, shown exactly once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if scopes and role != "service":
        raise ValueError("only service tokens carry scopes")
    token_id = str(uuid.uuid4())
    secret = f"{_PREFIX}{token_id.replace('-', '')}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        """INSERT INTO api_tokens (id, secret_hash, role, user_id, name, scopes)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        uuid.UUID(token_id),
        _digest(secret),
        role,
        uuid.UUID(user_id) if user_id else None,
        name,
        list(scopes),
    )
    return token_id, secret


async def revoke_token(conn: asyncpg.Connection, token_id: str) -> bool:
    """Revoke a token by id; False when there is no such live token."""
    try:
        ident = uuid.UUID(token_id)
    except ValueError:
        return False
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", ident
    )
    return str(status).endswith(" 1")


async def authenticate(conn: asyncpg.Connection, secret: str) -> TokenIdentity | None:
    """The identity behind a bearer secret, or None when unknown or revoked."""
    if not secret.startswith(_PREFIX):
        return None
    row = await conn.fetchrow(
        """SELECT id, role, user_id, name, scopes FROM api_tokens
            WHERE secret_hash = $1 AND revoked_at IS NULL""",
        _digest(secret),
    )
    if row is None:
        return None
    return TokenIdentity(
        token_id=str(row["id"]),
        role=row["role"],
        user_id=str(row["user_id"]) if row["user_id"] else None,
        name=row["name"] or "",
        scopes=tuple(row["scopes"] or ()),
    )
