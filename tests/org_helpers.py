"""Helpers for the organisation tests: people with tokens, an org with every role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx

from tests.helpers import funded_user
from tests.portal_helpers import bearer


@dataclass
class Person:
    user_id: str
    email: str
    headers: dict[str, str]


@dataclass
class Org:
    id: str
    people: dict[str, Person] = field(default_factory=dict)  # by role name in the test

    @property
    def wallet(self) -> str:
        return f"org:{self.id}"


async def person(pool: asyncpg.Pool, balance: int = 0) -> Person:
    """A registered user with a user token (and `balance` RCC of its own)."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    user_id = await funded_user(pool, balance, email=email)
    return Person(user_id, email, await bearer(pool, "user", user_id))


async def join(http: httpx.AsyncClient, pool: asyncpg.Pool, org: Org, role: str) -> Person:
    """A new person invited by the org's owner and accepting."""
    joiner = await person(pool)
    owner = org.people["owner"]
    body = {"email": joiner.email, "role": role}
    invited = await http.post(f"/orgs/{org.id}/invitations", json=body, headers=owner.headers)
    assert invited.status_code == 201, invited.text
    token = invited.json()["token"]
    accepted = await http.post(f"/invitations/{token}/accept", headers=joiner.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"org_id": org.id, "role": role}
    return joiner


async def grant_org(http: httpx.AsyncClient, pool: asyncpg.Pool, org_id: str, amount: int) -> None:
    """A platform admin's grant to the org's wallet."""
    admin = await bearer(pool, "admin")
    body = {"rcc_delta": amount, "reason": "test credits"}
    answer = await http.patch(f"/admin/orgs/{org_id}", json=body, headers=admin)
    assert answer.status_code == 200, answer.text


async def new_org(http: httpx.AsyncClient, pool: asyncpg.Pool, credits: int = 0) -> Org:
    """An org whose owner is a new person, with `credits` granted to its wallet."""
    owner = await person(pool)
    created = await http.post("/orgs", json={"name": "Studio"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    org = Org(created.json()["id"], {"owner": owner})
    if credits:
        await grant_org(http, pool, org.id, credits)
    return org
