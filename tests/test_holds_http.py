"""The service credits API over HTTP with real service tokens on the real store: holds
that capture what was used, exactly one winner between racing captures, a hold that
voids itself at its timeout, scopes, and one service unable to touch another's hold."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from rcc.audit import verify
from rcc.domain.errors import DomainError
from rcc.service.bus import execute
from rcc.service.commands import MarkJob
from rcc.service.handlers import Done
from rcc.service.hold_timeout_scheduler import HoldTimeoutScheduler
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up
from tests.projection_helpers import drain

ALL = ("credits:read", "credits:hold", "credits:usage")


async def _service(pool: asyncpg.Pool, name: str, scopes: tuple[str, ...] = ALL) -> dict[str, str]:
    return await bearer(pool, "service", name=name, scopes=scopes)


async def _wallet(client: httpx.AsyncClient, pool: asyncpg.Pool, amount: int) -> str:
    member = await sign_up(client)
    await grant(pool, member.user_id, amount)
    return f"user:{member.user_id}"


async def _read(client: httpx.AsyncClient, wallet: str, token: dict[str, str]) -> dict[str, int]:
    answer = await client.get(f"/credits/wallets/{wallet}", headers=token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {"balance": body["balance_rcc"], "held": body["held_rcc"]}


async def test_authorize_10_capture_4_spends_4_and_gives_6_back(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    render = await _service(pool, "render-farm")
    wallet = await _wallet(client, pool, 25)
    body = {"wallet": wallet, "amount_rcc": 10, "reason": "upscale 4k", "timeout_s": 600}
    held = await client.post("/holds", json=body, headers=render)
    assert held.status_code == 201, held.text
    hold = held.json()
    assert (hold["wallet"], hold["amount_rcc"], hold["status"]) == (wallet, 10, "held")
    assert hold["expires_at"]
    assert await _read(client, wallet, render) == {"balance": 15, "held": 10}
    # /me shows the same: the hold has left what can be spent, and is counted as held.
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["held_rcc"]) == (15, 10)

    key = {**render, "Idempotency-Key": "capture-1"}
    captured = await client.post(
        f"/holds/{hold['id']}/capture", json={"amount_rcc": 4}, headers=key
    )
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["captured_rcc"]) == ("captured", 4)
    assert await _read(client, wallet, render) == {"balance": 21, "held": 0}

    # The same key answers the first capture again; a new capture of an ended hold is 409.
    again = await client.post(f"/holds/{hold['id']}/capture", json={"amount_rcc": 4}, headers=key)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true")
    late = await client.post(f"/holds/{hold['id']}/void", headers=render)
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "illegal_transition"
    assert await _read(client, wallet, render) == {"balance": 21, "held": 0}

    await drain(pool)
    ledger = (await client.get("/ledger")).json()["items"]
    rows = [(r["reason"], r["delta"], r["actor"]) for r in ledger if r["reason"].startswith("HOLD")]
    assert sorted(rows) == [("HOLD", -10, "render-farm"), ("HOLD_RELEASE", 6, "render-farm")]
    notes = {r["reason"]: r["note"] for r in ledger}
    assert "upscale 4k" in notes["HOLD"]
    assert "settles a capture of 4 RCC" in notes["HOLD_RELEASE"]
    report = await verify(owner)
    assert report.ok, report.problems


async def test_two_concurrent_captures_of_one_hold_have_one_winner(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    svc = await _service(pool, "batcher")
    wallet = await _wallet(client, pool, 100)
    outcomes: list[int] = []
    for _ in range(5):
        hold = await client.post(
            "/holds", json={"wallet": wallet, "amount_rcc": 10, "reason": "race"}, headers=svc
        )
        hold_id = hold.json()["id"]
        answers = await asyncio.gather(
            client.post(f"/holds/{hold_id}/capture", json={"amount_rcc": 3}, headers=svc),
            client.post(f"/holds/{hold_id}/capture", json={"amount_rcc": 7}, headers=svc),
            client.post(f"/holds/{hold_id}/void", headers=svc),
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409, 409], [a.text for a in answers]
        outcomes += codes
        winner = next(a.json() for a in answers if a.status_code == 200)
        final = (await client.get(f"/holds/{hold_id}", headers=svc)).json()
        assert (final["status"], final["captured_rcc"]) == (
            winner["status"],
            winner["captured_rcc"],
        )
    spent = 100 - (await _read(client, wallet, svc))["balance"]
    captured_total = 0
    async with pool.acquire() as conn:
        captured_total = await conn.fetchval(
            "SELECT coalesce(sum((state->>'captured')::int), 0) FROM streams "
            "WHERE stream_id LIKE 'hold-%'"
        )
    report = await verify(owner)
    assert spent == captured_total  # exactly what the winners captured, nothing twice
    assert report.ok, report.problems


async def test_a_hold_with_a_2_second_timeout_voids_itself_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    svc = await _service(pool, "timer")
    wallet = await _wallet(client, pool, 30)
    body = {"wallet": wallet, "amount_rcc": 12, "reason": "may never finish", "timeout_s": 2}
    hold = (await client.post("/holds", json=body, headers=svc)).json()
    assert await _read(client, wallet, svc) == {"balance": 18, "held": 12}
    # Two schedulers running for real, as two `rcc serve` processes would.
    schedulers = [HoldTimeoutScheduler(pool, interval_s=0.2) for _ in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        for _ in range(100):  # at most 10 s
            hold_now = (await client.get(f"/holds/{hold['id']}", headers=svc)).json()
            if hold_now["status"] != "held":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let the second scheduler have its go
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        await asyncio.gather(*tasks)
    final = (await client.get(f"/holds/{hold['id']}", headers=svc)).json()
    assert (final["status"], final["timed_out"], final["released_rcc"]) == ("voided", True, 12)
    assert await _read(client, wallet, svc) == {"balance": 30, "held": 0}
    late = await client.post(f"/holds/{hold['id']}/capture", json={"amount_rcc": 1}, headers=svc)
    assert late.status_code == 409
    async with pool.acquire() as conn:
        releases = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'hold_released' AND stream_id = $1",
            f"wallet-{wallet.removeprefix('user:')}",
        )
    assert releases == 1
    report = await verify(owner)
    assert report.ok, report.problems


async def test_scopes_and_one_service_cannot_touch_anothers_hold(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    mine = await _service(pool, "owner-svc")
    other = await _service(pool, "other-svc")
    reader = await _service(pool, "reader-svc", ("credits:read",))
    wallet = await _wallet(client, pool, 10)
    body = {"wallet": wallet, "amount_rcc": 4, "reason": "mine"}
    # Without the scope (a reader, a plain service token, an admin): 403, nothing held.
    for token in (reader, await bearer(pool, "service"), await bearer(pool, "admin")):
        refused = await client.post("/holds", json=body, headers=token)
        assert (refused.status_code, refused.json()["error"]) == (403, "missing_scope")
    usage = await client.post("/usage", json=body, headers=mine)
    assert usage.status_code == 201, usage.text
    assert await _read(client, wallet, reader) == {"balance": 6, "held": 0}

    hold = (await client.post("/holds", json=body, headers=mine)).json()
    for path, payload in (
        (f"/holds/{hold['id']}/capture", {"amount_rcc": 4}),
        (f"/holds/{hold['id']}/void", None),
    ):
        stolen = await client.post(path, json=payload, headers=other)
        assert stolen.status_code == 404, stolen.text
    assert (await client.get(f"/holds/{hold['id']}", headers=other)).status_code == 404
    assert await _read(client, wallet, reader) == {"balance": 2, "held": 4}

    short = await client.post("/holds", json={**body, "amount_rcc": 3}, headers=mine)
    assert short.status_code == 402
    assert (short.json()["balance_rcc"], short.json()["cost_rcc"]) == (2, 3)
    for bad in ({**body, "amount_rcc": 0}, {**body, "timeout_s": 0}, {**body, "reason": ""},
                {**body, "wallet": "org:x"}):  # fmt: skip
        assert (await client.post("/holds", json=bad, headers=mine)).status_code in {400, 422}
    over = await client.post(f"/holds/{hold['id']}/capture", json={"amount_rcc": 5}, headers=mine)
    assert over.status_code == 422  # more than it holds
    assert (await client.post(f"/holds/{hold['id']}/void", headers=mine)).status_code == 200
    assert await _read(client, wallet, reader) == {"balance": 6, "held": 0}


async def test_a_job_is_a_hold_success_captures_what_it_charged_failure_voids(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 20)
    video = {**IMAGE_JOB, "type": "VIDEO_TASK"}  # 5 RCC

    async def start() -> str:
        created = await client.post("/jobs", json=video, headers=member.headers)
        assert created.status_code == 201, created.text
        assert (created.json()["held_rcc"], created.json()["charged_rcc"]) == (5, 0)
        job_id = str(created.json()["id"])
        assert isinstance(await execute(pool, MarkJob(job_id=job_id, status="running")), Done)
        return job_id

    metered, failed = await start(), await start()
    # A metered price captures less than it held; the rest comes back in the same commit.
    done = await execute(pool, MarkJob(job_id=metered, status="succeeded", charged_rcc=2))
    assert isinstance(done, Done) and done.result["released_rcc"] == 3
    assert isinstance(await execute(pool, MarkJob(job_id=failed, status="failed")), Done)
    whole = await start()
    too_much = await execute(pool, MarkJob(job_id=whole, status="succeeded", charged_rcc=6))
    assert isinstance(too_much, DomainError)  # more than held: refused, nothing written
    assert isinstance(await execute(pool, MarkJob(job_id=whole, status="succeeded")), Done)
    jobs = [metered, whole, failed]
    assert (await client.get("/me")).json()["balance_rcc"] == 20 - 2 - 5

    await drain(pool)
    views = {j: (await client.get(f"/jobs/{j}")).json() for j in jobs}
    assert [(views[j]["held_rcc"], views[j]["charged_rcc"]) for j in jobs] == [
        (0, 2),
        (0, 5),
        (0, 0),
    ]
    ledger = (await client.get("/ledger", params={"reason": "JOB_RELEASE"})).json()["items"]
    by_job = {row["job_id"]: (row["delta"], row["note"]) for row in ledger}
    assert by_job[metered] == (3, "settles a capture of 2 RCC")
    assert by_job[failed] == (5, None)
    assert whole not in by_job
    report = await verify(owner)
    assert report.ok, report.problems


async def test_me_counts_a_jobs_hold_and_a_services_hold_as_held(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """GET /me's held_rcc is every open hold: a service's and an open job's."""
    render = await _service(pool, "render-farm")
    member = await sign_up(client)
    await grant(pool, member.user_id, 20)
    wallet = f"user:{member.user_id}"
    body = {"wallet": wallet, "amount_rcc": 3, "reason": "upscale", "timeout_s": 600}
    assert (await client.post("/holds", json=body, headers=render)).status_code == 201
    video = {**IMAGE_JOB, "type": "VIDEO_TASK"}
    job = await client.post("/jobs", json=video, headers=member.headers)
    assert job.status_code == 201, job.text
    await drain(pool)
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["held_rcc"]) == (20 - 3 - 5, 3 + 5)
    cancelled = await client.post(f"/jobs/{job.json()['id']}/cancel", headers=member.headers)
    assert cancelled.status_code == 200, cancelled.text
    await drain(pool)
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["held_rcc"]) == (20 - 3, 3)
