"""The `rcc_reader` login (docs/READ_API.md): its password is sent as a SCRAM verifier.

`ALTER ROLE ... PASSWORD` with the password in clear would put it in the server's log
whenever statements are logged; a SCRAM-SHA-256 verifier (what `psql \\password`
sends) lets the server check logins without ever seeing the password itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import asyncpg

READER_ROLE = "rcc_reader"
_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for this password (RFC 5802/7677)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def enable_reader_login(conn: asyncpg.Connection, password: str) -> None:
    """Let rcc_reader log in with this password (the role is created by migration 0015).

    An empty password changes nothing: the role is global to the server, and turning
    its login off here would cut off readers of every other database on it."""
    if not password:
        return
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
        READER_ROLE,
        scram_verifier(password),
    )
    await conn.execute(statement)
