"""GET /catalog names the price of every job type, and a job reserves exactly that."""

from __future__ import annotations

import asyncpg
import httpx

from rcc.domain.prices import JOB_PRICES_RCC
from tests.portal_helpers import IMAGE_JOB, grant, sign_up


async def test_catalog_lists_every_job_type_with_its_price(client: httpx.AsyncClient) -> None:
    catalog = (await client.get("/catalog")).json()
    listed = {row["type"]: row["rcc"] for row in catalog["job_prices"]}
    assert listed == JOB_PRICES_RCC
    assert set(listed) == {"IMAGE_TASK", "VIDEO_TASK"}


async def test_a_job_reserves_the_price_the_catalog_shows(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 100)
    catalog = (await client.get("/catalog")).json()
    for row in catalog["job_prices"]:
        before = (await client.get("/me", headers=member.headers)).json()["balance_rcc"]
        job = {**IMAGE_JOB, "type": row["type"]}
        created = await client.post("/jobs", json=job, headers=member.headers)
        assert created.status_code == 201, created.text
        after = (await client.get("/me", headers=member.headers)).json()["balance_rcc"]
        assert before - after == row["rcc"], row
