"""Organisations over HTTP: every org route called as owner, admin, member, non-member,
removed member, service token and platform admin, each status asserted; then what each
role sees (usage, ledger by member, jobs), invitations and the owner's rules."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from projections.registry import ALL
from rcc.domain import org as orgs
from rcc.projector.replay import replay
from rcc.service import org_commands as oc
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.org_helpers import Org, Person, grant_org, join, new_org, person
from tests.portal_helpers import IMAGE_JOB, bearer
from tests.projection_helpers import drain, dump

ROLES = ("owner", "admin", "member", "outsider", "removed", "service", "platform_admin")


@dataclass
class Call:
    method: str
    path: str
    body: object = None


Route = Callable[[httpx.AsyncClient, asyncpg.Pool, Org], Awaitable[Call]]


async def _fresh_member(http: httpx.AsyncClient, pool: asyncpg.Pool, org: Org) -> Call:
    spare = await join(http, pool, org, "member")
    return Call("DELETE", f"/orgs/{org.id}/members/{spare.user_id}")


async def _stranger_invitation(http: httpx.AsyncClient, pool: asyncpg.Pool, org: Org) -> Call:
    body = {"email": f"{uuid.uuid4().hex[:8]}@elsewhere.org", "role": "member"}
    owner = org.people["owner"].headers
    invited = await http.post(f"/orgs/{org.id}/invitations", json=body, headers=owner)
    return Call("POST", f"/invitations/{invited.json()['token']}/accept")


def _fixed(method: str, path: str, body: object = None) -> Route:
    async def call(http: httpx.AsyncClient, pool: asyncpg.Pool, org: Org) -> Call:
        return Call(method, path.format(org=org.id, member=org.people["member"].user_id), body)

    return call


def _invite(http: httpx.AsyncClient, pool: asyncpg.Pool, org: Org) -> Awaitable[Call]:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    return _fixed("POST", "/orgs/{org}/invitations", {"email": email})(http, pool, org)


USERS_OK = {"owner": 200, "admin": 200, "member": 200, "outsider": 200, "removed": 200}
NO_USER = {"service": 403, "platform_admin": 403}  # tokens that are not a user's
MEMBERS = {"owner": 200, "admin": 200, "member": 200, "outsider": 404, "removed": 404, **NO_USER}
MANAGERS = {**MEMBERS, "member": 403}

# route -> the status each role gets
MATRIX: list[tuple[str, Route, dict[str, int]]] = [
    ("POST /orgs", _fixed("POST", "/orgs", {"name": "Mine"}),
     {k: 201 for k in USERS_OK} | NO_USER),
    ("GET /orgs", _fixed("GET", "/orgs"), USERS_OK | NO_USER),
    ("GET /orgs/{id}", _fixed("GET", "/orgs/{org}"), MEMBERS),
    ("GET /orgs/{id}/members", _fixed("GET", "/orgs/{org}/members"), MANAGERS),
    ("POST /orgs/{id}/invitations", _invite, {**MANAGERS, "owner": 201, "admin": 201}),
    ("PATCH /orgs/{id}/members/{member}",
     _fixed("PATCH", "/orgs/{org}/members/{member}", {"monthly_budget_rcc": 50}), MANAGERS),
    ("DELETE /orgs/{id}/members/{other}", _fresh_member,
     {**MANAGERS, "owner": 204, "admin": 204}),
    ("PATCH /orgs/{id}", _fixed("PATCH", "/orgs/{org}", {"monthly_budget_rcc": 900}), MANAGERS),
    ("GET /orgs/{id}/ledger", _fixed("GET", "/orgs/{org}/ledger"), MANAGERS),
    ("GET /orgs/{id}/jobs", _fixed("GET", "/orgs/{org}/jobs"), MEMBERS),
    ("POST /jobs wallet=org", _fixed("POST", "/jobs", {**IMAGE_JOB, "wallet": "org:{org}"}),
     {**MEMBERS, "owner": 201, "admin": 201, "member": 201, "outsider": 403, "removed": 403}),
    ("POST /invitations/{token}/accept (someone else's)", _stranger_invitation,
     {k: 403 for k in USERS_OK} | NO_USER),
    # h14: the org's auto top-up and Stripe customer portal (409: it has bought nothing yet)
    ("GET /orgs/{id}/auto-topup", _fixed("GET", "/orgs/{org}/auto-topup"), MANAGERS),
    ("PUT /orgs/{id}/auto-topup", _fixed("PUT", "/orgs/{org}/auto-topup",
                                         {"enabled": True, "threshold_rcc": 50, "pack": "S"}),
     MANAGERS),
    ("DELETE /orgs/{id}/auto-topup", _fixed("DELETE", "/orgs/{org}/auto-topup"), MANAGERS),
    ("POST /orgs/{id}/billing/portal", _fixed("POST", "/orgs/{org}/billing/portal"),
     {**MANAGERS, "owner": 409, "admin": 409}),
    ("GET /admin/orgs", _fixed("GET", "/admin/orgs"),
     {k: 403 for k in USERS_OK} | {"service": 200, "platform_admin": 200}),
    ("PATCH /admin/orgs/{id}",
     _fixed("PATCH", "/admin/orgs/{org}", {"rcc_delta": 5, "reason": "goodwill"}),
     {k: 403 for k in USERS_OK} | {"service": 403, "platform_admin": 200}),
]  # fmt: skip


async def _org_with_every_role(http: httpx.AsyncClient, pool: asyncpg.Pool) -> Org:
    org = await new_org(http, pool, credits=1000)
    org.people["admin"] = await join(http, pool, org, "admin")
    org.people["member"] = await join(http, pool, org, "member")
    org.people["removed"] = removed = await join(http, pool, org, "member")
    owner = org.people["owner"].headers
    gone = await http.delete(f"/orgs/{org.id}/members/{removed.user_id}", headers=owner)
    assert gone.status_code == 204, gone.text
    org.people["outsider"] = await person(pool, balance=100)
    org.people["service"] = Person("", "", await bearer(pool, "service"))
    org.people["platform_admin"] = Person("", "", await bearer(pool, "admin"))
    return org


async def test_every_org_route_answers_each_role_as_the_matrix_says(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await _org_with_every_role(client, pool)
    seen: dict[tuple[str, str], int] = {}
    wanted: dict[tuple[str, str], int] = {}
    for name, route, statuses in MATRIX:
        assert set(statuses) == set(ROLES), name  # every role is asked, no route skipped
        for role in ROLES:
            call = await route(client, pool, org)
            body = _filled(call.body, org)
            answer = await client.request(
                call.method, call.path, json=body, headers=org.people[role].headers
            )
            seen[(name, role)] = answer.status_code
            wanted[(name, role)] = statuses[role]
            if answer.status_code >= 400:
                assert set(answer.json()) >= {"error", "detail"}, answer.text
    assert seen == wanted


def _filled(body: object, org: Org) -> object:
    if isinstance(body, dict) and body.get("wallet") == "org:{org}":
        return {**body, "wallet": org.wallet}
    return body


async def test_members_see_their_own_jobs_managers_see_everyones_and_the_ledger_by_member(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await new_org(client, pool, credits=100)
    alice = await join(client, pool, org, "member")
    bob = await join(client, pool, org, "member")
    owner = org.people["owner"].headers
    ids = {}
    for who in (alice, bob):
        made = await client.post(
            "/jobs", json={**IMAGE_JOB, "wallet": org.wallet}, headers=who.headers
        )
        assert made.status_code == 201, made.text
        ids[who.user_id] = made.json()["id"]
    await drain(pool)
    mine = (await client.get(f"/orgs/{org.id}/jobs", headers=alice.headers)).json()
    assert [j["id"] for j in mine["items"]] == [ids[alice.user_id]]
    every = (await client.get(f"/orgs/{org.id}/jobs", headers=owner)).json()
    assert sorted(j["id"] for j in every["items"]) == sorted(ids.values())

    ledger = await client.get(
        f"/orgs/{org.id}/ledger", params={"member": bob.user_id}, headers=owner
    )
    assert [(r["reason"], r["job_id"]) for r in ledger.json()["items"]] == [
        ("JOB_RESERVE", ids[bob.user_id])
    ]
    whole = (await client.get(f"/orgs/{org.id}/ledger", headers=owner)).json()["items"]
    assert sorted(r["reason"] for r in whole) == ["JOB_RESERVE", "JOB_RESERVE", "MANUAL_ADJUST"]

    # The org's balance for everyone in it; usage of all only for the owner and admins.
    seen_by_alice = (await client.get(f"/orgs/{org.id}", headers=alice.headers)).json()
    cost = seen_by_alice["my_used_this_month_rcc"]
    assert cost > 0 and seen_by_alice["balance_rcc"] == 100 - 2 * cost
    assert seen_by_alice["used_this_month_rcc"] is None
    assert (await client.get(f"/orgs/{org.id}", headers=owner)).json()[
        "used_this_month_rcc"
    ] == 2 * cost
    listed = (await client.get(f"/orgs/{org.id}/members", headers=owner)).json()["items"]
    assert {m["user_id"]: m["used_this_month_rcc"] for m in listed} == {
        org.people["owner"].user_id: 0,
        alice.user_id: cost,
        bob.user_id: cost,
    }
    # Nobody's personal wallet moved: the org paid.
    assert (await client.get("/me", headers=alice.headers)).json()["balance_rcc"] == 0
    mine_personal = (await client.get("/ledger", headers=alice.headers)).json()["items"]
    assert mine_personal == []


async def test_a_budget_refuses_with_402_and_nothing_is_written_then_a_release_gives_it_back(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await new_org(client, pool, credits=1000)
    alice = await join(client, pool, org, "member")
    owner = org.people["owner"].headers
    job = {**IMAGE_JOB, "wallet": org.wallet}
    first = await client.post("/jobs", json=job, headers=alice.headers)
    cost = first.json()["cost_rcc"]
    patched = await client.patch(
        f"/orgs/{org.id}/members/{alice.user_id}",
        json={"monthly_budget_rcc": cost + cost // 2},
        headers=owner,
    )
    assert patched.status_code == 200 and patched.json()["used_this_month_rcc"] == cost
    refused = await client.post("/jobs", json=job, headers=alice.headers)
    assert refused.status_code == 402, refused.text
    body = refused.json()
    now = datetime.now(UTC)
    next_month = (now.replace(day=28) + timedelta(days=4)).replace(day=1)
    assert body["error"] == "budget_exceeded"
    assert (body["budget_rcc"], body["used_rcc"]) == (cost + cost // 2, cost)
    assert body["resets_at"].startswith(next_month.strftime("%Y-%m-01T00:00:00"))
    after = (await client.get(f"/orgs/{org.id}", headers=owner)).json()
    assert after["balance_rcc"] == 1000 - cost  # the refused job reserved nothing

    cancelled = await client.post(f"/jobs/{first.json()['id']}/cancel", headers=alice.headers)
    assert cancelled.status_code == 200, cancelled.text
    again = await client.post("/jobs", json=job, headers=alice.headers)
    assert again.status_code == 201, again.text  # the release gave the budget back

    # The org's own total refuses too, whoever asks.
    await client.patch(f"/orgs/{org.id}", json={"monthly_budget_rcc": cost}, headers=owner)
    total = await client.post("/jobs", json=job, headers=owner)
    assert total.status_code == 402 and total.json()["error"] == "budget_exceeded"
    assert total.json()["budget_rcc"] == cost


async def test_invitations_are_single_use_for_their_email_and_expire(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    org = await new_org(client, pool)
    boss = org.people["owner"].headers
    invitee, intruder = await person(pool), await person(pool)
    invited = await client.post(
        f"/orgs/{org.id}/invitations", json={"email": invitee.email, "role": "admin"}, headers=boss
    )
    token = invited.json()["token"]
    wrong = await client.post(f"/invitations/{token}/accept", headers=intruder.headers)
    assert wrong.status_code == 403, wrong.text
    assert (await client.post(f"/invitations/{token}/accept", headers=invitee.headers)).json() == {
        "org_id": org.id,
        "role": "admin",
    }
    reused = await client.post(f"/invitations/{token}/accept", headers=invitee.headers)
    assert reused.status_code == 404  # single use
    # The access log keeps the path with the token hidden.
    logged = [r.__dict__ for r in caplog.records if r.name == "portal.access"]
    paths = [str(record.get("path")) for record in logged]
    assert "/invitations/***/accept" in paths and not any(token in repr(r) for r in logged)
    # Only the token's hash is stored, in the events and in the lookup.
    stored = await owner.fetchval(
        """SELECT (SELECT count(*) FROM events WHERE data::text LIKE '%' || $1 || '%')
                + (SELECT count(*) FROM streams WHERE state::text LIKE '%' || $1 || '%')
                + (SELECT count(*) FROM idempotency_keys WHERE result::text LIKE '%' || $1 || '%')
                + (SELECT count(*) FROM org_invitation_tokens WHERE token_hash = $1)""",
        token,
    )
    assert stored == 0

    late = await person(pool)
    short = secrets.token_urlsafe(16)
    invitation = oc.InviteToOrg(
        org_id=org.id, actor=org.people["owner"].user_id, email=late.email, role="member",
        invitation_id=str(uuid.uuid4()), token_hash=orgs.token_hash(short), valid_for_s=1,
    )  # fmt: skip
    assert isinstance(await execute(pool, invitation), Done)
    await asyncio.sleep(1.05)  # the second it lasts
    expired = await client.post(f"/invitations/{short}/accept", headers=late.headers)
    assert expired.status_code == 410 and expired.json()["error"] == "invitation_expired"
    gone = await client.post(f"/invitations/{short}/accept", headers=late.headers)
    assert gone.status_code == 404  # recorded as expired: never again


async def test_there_is_always_exactly_one_owner_and_replay_rebuilds_the_org_tables(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    org = await new_org(client, pool)
    first = org.people["owner"]
    admin = await join(client, pool, org, "admin")
    for attempt in (
        client.delete(f"/orgs/{org.id}/members/{first.user_id}", headers=first.headers),
        client.delete(f"/orgs/{org.id}/members/{first.user_id}", headers=admin.headers),
        client.patch(f"/orgs/{org.id}/members/{first.user_id}", json={"role": "member"},
                     headers=first.headers),
        client.patch(f"/orgs/{org.id}", json={"owner_user_id": admin.user_id},
                     headers=admin.headers),
    ):  # fmt: skip
        answer = await attempt
        assert answer.status_code in {403, 409}, answer.text
    moved = await client.patch(
        f"/orgs/{org.id}", json={"owner_user_id": admin.user_id}, headers=first.headers
    )
    assert moved.status_code == 200 and moved.json()["owner_user_id"] == admin.user_id
    roles = (await client.get(f"/orgs/{org.id}/members", headers=admin.headers)).json()["items"]
    assert sorted(m["role"] for m in roles) == ["admin", "owner"]
    left = await client.delete(f"/orgs/{org.id}/members/{first.user_id}", headers=first.headers)
    assert left.status_code == 204  # no longer the owner: may leave
    await drain(pool)
    assert (await client.get("/orgs", headers=first.headers)).json()["items"] == []
    assert [
        o["role"] for o in (await client.get("/orgs", headers=admin.headers)).json()["items"]
    ] == ["owner"]
    await grant_org(client, pool, org.id, 10)
    await drain(pool)  # the admin list is a read model
    listed = (await client.get("/admin/orgs", headers=await bearer(pool, "admin"))).json()
    assert [(o["id"], o["balance_rcc"], o["member_count"]) for o in listed["items"]] == [
        (org.id, 10, 1)
    ]
    live = await dump(owner)
    assert live["org_members"] and live["orgs"] and live["org_invitations"]
    await replay(owner, ALL, batch_size=3)
    assert await dump(owner) == live, "the org read models equal a replay from position 0"
