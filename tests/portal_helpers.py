"""Helpers for portal tests: signed-up clients, tokens, and funded wallets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import httpx

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.tokens import create_token

PASSWORD = "correct horse battery"
IMAGE_JOB = {"type": "IMAGE_TASK", "workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}}}


@dataclass
class Member:
    """A signed-up user: its id, email and the CSRF token of its cookie session."""

    user_id: str
    email: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-csrf-token": self.csrf}


async def sign_up(http: httpx.AsyncClient, email: str | None = None) -> Member:
    email = email or f"{uuid.uuid4().hex[:10]}@example.com"
    response = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    return Member(body["id"], email, body["csrf_token"])


async def grant(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(pool, c.GrantCredits(user_id=user_id, kind="topup", amount=amount))
    assert isinstance(done, Done), done


async def bearer(
    pool: asyncpg.Pool,
    role: str,
    user_id: str | None = None,
    *,
    name: str = "",
    scopes: tuple[str, ...] = (),
) -> dict[str, str]:
    async with pool.acquire() as conn:
        _, secret = await create_token(conn, role, user_id, name, scopes)
    return {"authorization": f"Bearer {secret}"}
