"""What schemathesis found in the portal, pinned as plain tests so it stays fixed even
when a fuzzing run does not happen to draw the same input again."""

from __future__ import annotations

import asyncpg
import httpx

from rcc.domain.wallet import MAX_BALANCE_RCC
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up


async def test_nul_characters_are_bad_input_not_a_server_error(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # PostgreSQL refuses U+0000 in text and in jsonb; it used to escape as a 500.
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)
    answers = [
        await client.get("/admin/logs", params={"action": "a\x00b"}, headers=admin),
        await client.get("/admin/events", params={"stream": "\x00"}, headers=admin),
        await client.get("/auth/gitlab/callback", params={"state": "\x00", "code": "c"}),
        await client.get("/jobs/%00"),
        await client.post(
            "/jobs",
            json={**IMAGE_JOB, "workflow": {"1": {"class_type": "A\x00", "inputs": {}}}},
            headers=member.headers,
        ),
    ]
    for answer in answers:
        assert answer.status_code in (400, 404), answer.text
        if answer.status_code == 400:
            assert answer.json()["error"] in ("invalid_request", "invalid_state"), answer.text
    assert (await client.get("/me")).json()["balance_rcc"] == 10, "the refused job cost nothing"


async def test_dates_that_leave_the_calendar_in_utc_are_bad_input(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # 9999-12-31T23:59:59-23:00 is year 10000 in UTC: asyncpg cannot encode it (was a 500;
    # on the CSV export, a 200 whose stream was cut short).
    admin = await bearer(pool, "admin")
    await sign_up(client)
    late, early = "9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+10:00"
    for path in ("/admin/logs", "/admin/logs.csv", "/admin/jobs", "/ledger"):
        for params in ({"since": late}, {"until": early}):
            headers = {} if path == "/ledger" else admin
            answer = await client.get(path, params=params, headers=headers)
            assert answer.status_code == 400, (path, params, answer.text)
            assert answer.json()["error"] == "invalid_request"
    csv = await client.get("/admin/logs.csv", params={"action": "\x00"}, headers=admin)
    assert csv.status_code == 400


async def test_event_positions_beyond_bigint_are_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    answer = await client.get("/admin/events", params={"after": str(2**70)}, headers=admin)
    assert answer.status_code == 400 and answer.json()["fields"][0]["key"] == "after"


async def test_an_adjustment_cannot_push_a_balance_past_what_the_read_models_hold(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # A delta of 2**63 - 1 used to be accepted twice: the second event overflowed the
    # projections' bigint balance and wedged every projector behind it.
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    path = f"/admin/users/{member.user_id}"
    huge = await client.patch(path, json={"rcc_delta": 2**64 - 1, "reason": "x"}, headers=admin)
    assert huge.status_code == 400 and huge.json()["fields"][0]["key"] == "rcc_delta"
    top = {"rcc_delta": MAX_BALANCE_RCC, "reason": "to the ceiling"}
    assert (await client.patch(path, json=top, headers=admin)).status_code == 200
    over = await client.patch(path, json={"rcc_delta": 1, "reason": "x"}, headers=admin)
    assert over.status_code == 422 and over.json()["error"] == "invalid"
    assert (await client.get("/me")).json()["balance_rcc"] == MAX_BALANCE_RCC
    # The read models took the ceiling in their stride and keep up.
    assert (await client.get("/ledger")).json()["items"][0]["delta"] == MAX_BALANCE_RCC


async def test_metrics_and_logout_are_documented_as_they_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    answer = await client.get("/metrics", headers=await bearer(pool, "service"))
    assert answer.headers["content-type"].startswith("text/plain")
    logout = document["paths"]["/auth/logout"]["post"]["responses"]["204"]
    assert "content" not in logout
    assert (await client.post("/auth/logout")).headers.get("content-type") is None
