"""The keys that used to be read from settings, read through the policy resolver
(docs/POLICIES.md, "Who reads what"): each test changes a policy and shows the running
code follows it, for the scope it was set for and no other, without a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from comfy_adapter.run import prompt_id_for
from projections.policy_values import PROJECTION as POLICY_VALUES
from projections.registry import select
from rcc.billing.follower import BillingFollower, policy_thresholds
from rcc.domain.events import BillingStateChanged, decode_event
from rcc.follower import checkpoints
from rcc.policy import resolve
from rcc.policy.store import load_book
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from tests.adapter_helpers import SLOW, create_job, running, settings_for, wait_status
from tests.comfy_server import ComfyServer
from tests.conftest import portal_client
from tests.helpers import funded_user
from tests.org_helpers import join, new_org
from tests.portal_helpers import PASSWORD, grant, sign_up
from tests.projection_helpers import drain
from tests.test_webhooks import notifying, register, webhook_settings
from tests.webhook_receiver import Receiver, eventually

ENV_THRESHOLD = 5  # RCC_LOW_BALANCE_RCC in the test settings (the default)


async def set_policy(
    pool: asyncpg.Pool,
    key: str,
    value: object,
    scope: str = "global",
    scope_id: str = "",
    effective_at: datetime | None = None,
) -> None:
    cmd = SetPolicy(
        key=key, scope=scope, scope_id=scope_id, value=value,  # type: ignore[arg-type]
        effective_at=effective_at, reason="test", actor="test",
    )  # fmt: skip
    assert isinstance(await execute(pool, cmd), Done)


async def debit(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(
        pool, c.AdjustCredits(user_id=user_id, amount=-amount, actor="t", note="d")
    )
    assert isinstance(done, Done), done


async def transitions(pool: asyncpg.Pool, wallet: str) -> list[BillingStateChanged]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version",
            f"billing-{wallet}",
        )
    return [decode_event(r["type"], r["data"]) for r in rows]  # type: ignore[misc]


async def test_a_users_low_balance_threshold_moves_only_their_state_from_its_time(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """X's threshold of 50 (user scope) makes 40 RCC low for X, while Y at 40 stays
    healthy; Y's own 45 from a future instant judges only debits recorded after it,
    even when the follower folds them all later in one batch."""
    x = await sign_up(client)
    y = await funded_user(pool, 0)
    await set_policy(pool, "billing.low_balance_rcc", 50, "user", x.user_id)
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    await set_policy(pool, "billing.low_balance_rcc", 45, "user", y, effective_at=at)
    for user in (x.user_id, y):
        await grant(pool, user, 100)
        await debit(pool, user, 60)  # 40 left
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["billing_state"]) == (40, "low_balance"), me
    page = (await client.get("/app/credits")).text
    assert 'data-billing-state="low_balance"' in page and "50 RCC or less" in page
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.05)
    await debit(pool, y, 1)  # 39, recorded after Y's 45 took effect
    follower = BillingFollower(policy_thresholds(ENV_THRESHOLD))
    async with pool.acquire() as conn:
        await checkpoints.ensure(conn, [follower.name], "subscriber")
    await drain(pool, [follower], limit=50)  # one late pass over everything
    xs, ys = await transitions(pool, x.user_id), await transitions(pool, y)
    assert [(e.state, e.balance, e.threshold) for e in xs] == [
        ("healthy", 100, 50),
        ("low_balance", 40, 50),
    ]
    assert [(e.state, e.balance, e.threshold) for e in ys] == [
        ("healthy", 100, ENV_THRESHOLD),
        ("low_balance", 39, 45),  # not at 40: that debit came before 45 took effect
    ]


async def sampled_until_done(
    pool: asyncpg.Pool, comfy: ComfyServer, jobs: dict[str, str]
) -> list[Counter[str]]:
    """Each owner's prompts on the double, sampled until every job (id: owner) succeeded."""
    samples: list[Counter[str]] = []
    stop = asyncio.Event()
    owners = {prompt_id_for(job): user for job, user in jobs.items()}
    sampler = asyncio.create_task(on_backend(comfy, owners, samples, stop))
    for job in jobs:
        assert await wait_status(pool, job, "succeeded", within=30) == "succeeded"
    stop.set()
    await sampler
    return samples


async def on_backend(
    comfy: ComfyServer, owner_of: dict[str, str], samples: list[Counter[str]], stop: asyncio.Event
) -> None:
    """Every 5 ms: each user's prompts on the ComfyUI double (queued there or running)."""
    while not stop.is_set():
        held = [item.prompt_id for item in comfy.pending]
        held += [comfy.running.prompt_id] if comfy.running is not None else []
        samples.append(Counter(owner_of[p] for p in held if p in owner_of))
        await asyncio.sleep(0.005)


async def test_a_users_max_running_by_policy_holds_at_dispatch_and_others_keep_theirs(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """X (user policy: 1) never has two prompts on the backend at once; Y (no policy: the
    adapter's RCC_MAX_RUNNING_JOBS_PER_USER, 2) does, with 4 free slots for both."""
    x, y = await funded_user(pool, 20), await funded_user(pool, 20)
    await set_policy(pool, "jobs.max_running", 1, "user", x)
    await drain(pool, [POLICY_VALUES])  # the claim reads the policy_values read model
    async with (
        ComfyServer(silent_seconds={"ImageBlur": 0.6}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], slots=4, max_running_per_user=2)),
    ):
        jobs = {await create_job(pool, user, SLOW): user for user in (x, y) for _ in range(3)}
        samples = await sampled_until_done(pool, comfy, jobs)
    assert max(s[x] for s in samples) == 1, "X had two prompts on the backend at once"
    assert max(s[y] for s in samples) == 2, "Y never used its two slots"


async def test_an_orgs_max_running_holds_for_its_members_org_jobs_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An org-scoped `jobs.max_running` of 1: a member's jobs charged to the org never
    have two prompts on the backend at once; a user outside it keeps the default 2."""
    org = await new_org(client, pool, credits=50)
    member = await join(client, pool, org, "member")
    y = await funded_user(pool, 20)
    await set_policy(pool, "jobs.max_running", 1, "org", org.id)
    await drain(pool, [POLICY_VALUES])
    async with (
        ComfyServer(silent_seconds={"ImageBlur": 0.6}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], slots=4, max_running_per_user=2)),
    ):
        jobs = {
            await create_job(pool, member.user_id, SLOW, org_id=org.id): member.user_id
            for _ in range(3)
        }
        jobs |= {await create_job(pool, y, SLOW): y for _ in range(3)}
        samples = await sampled_until_done(pool, comfy, jobs)
    assert max(s[member.user_id] for s in samples) == 1, "two org jobs on the backend at once"
    assert max(s[y] for s in samples) == 2, "the user outside the org never used two slots"


async def test_a_replay_of_policy_values_resolves_every_value_as_the_log_does(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """The SQL resolver (rcc_policy_values_v1) over the replayed read model answers what
    rcc.policy.resolve answers from the events, for every scope combination at every
    instant that matters (each setting's start, just before it, now, after a scheduled
    change)."""
    u1, u2 = await funded_user(pool, 0), await funded_user(pool, 0)
    later = datetime.now(UTC) + timedelta(hours=1)
    changes: list[tuple[str, object, str, str, datetime | None]] = [
        ("jobs.max_running", 3, "global", "", None),
        ("jobs.max_running", 4, "plan", "pro", None),
        ("jobs.max_running", 1, "user", u1, None),
        ("jobs.max_running", 7, "org", "o1", None),
        ("jobs.max_running", 5, "plan", "pro", later),
        ("limits.daily_rcc", 30, "plan", "free", None),
        ("limits.daily_rcc", None, "user", u2, None),  # "no limit" is a value, not unset
        ("limits.daily_rcc", 50, "global", "", later),
        ("jobs.max_running", 2, "user", u1, later),
    ]
    for key, value, scope, scope_id, effective_at in changes:
        await set_policy(pool, key, value, scope, scope_id, effective_at)
    await drain(pool, [POLICY_VALUES])
    before = await owner.fetch("SELECT * FROM policy_values ORDER BY seq")
    await replay(owner, select([POLICY_VALUES.name]))
    assert await owner.fetch("SELECT * FROM policy_values ORDER BY seq") == before
    assert len(before) == len(changes)
    book = await load_book(owner)
    now = datetime.now(UTC)
    starts = {e.effective_at for e in book.entries}
    instants = sorted(starts | {t - timedelta(microseconds=1) for t in starts} | {now, later})
    unset = object()
    combos = list(product((u1, u2, None), ("o1", None), ("free", "pro")))
    users, orgs, plans = ([c[i] for c in combos] for i in range(3))
    compared = 0
    for key, at in product(("jobs.max_running", "limits.daily_rcc"), instants):
        rows = await owner.fetch(
            "SELECT n, value FROM rcc_policy_values_v1($1, $2, $3, $4, $5)",
            key, at, users, orgs, plans,
        )  # fmt: skip
        found = {r["n"]: r["value"] for r in rows}
        for n, (user, org, plan) in enumerate(combos, start=1):
            expected = resolve(book, key, user=user, org=org, plan=plan, at=at, default=unset)
            assert found.get(n, unset) == expected, (key, user, org, plan, at)
            compared += 1
    assert compared == 2 * 3 * 2 * 2 * len(instants)


async def test_the_login_rate_limit_follows_its_policy_without_a_restart(
    portal_app: Any, pool: asyncpg.Pool
) -> None:
    """`ratelimit.login_per_min` at 2 refuses the third attempt of a minute; raised to 5,
    the next attempt is let through again, by the same running portal."""
    await set_policy(pool, "ratelimit.login_per_min", 2)
    body = {"email": "x@example.com", "password": PASSWORD}
    async with portal_client(portal_app, ip="10.9.8.7") as http:
        codes = [(await http.post("/auth/login", json=body)).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        await set_policy(pool, "ratelimit.login_per_min", 5)
        assert (await http.post("/auth/login", json=body)).status_code == 401


async def test_a_changed_retry_schedule_applies_to_the_next_failure_without_a_restart(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path
) -> None:
    """The running sender retries twice 0.2 s apart (RCC_WEBHOOK_RETRY_SCHEDULE_S); then
    `webhooks.retry_schedule_s` [1, 1, 3600] makes it wait an hour after the third
    failure, where the environment's schedule would have retried at once."""
    down = Receiver(fail_first=1000)
    await down.start()
    await register(pool, down.url, ["payment.granted"])
    try:
        async with notifying(pool, webhook_settings(db_url, tmp_path)):
            await funded_user(pool, 30)  # payment.granted
            await down.wait_for(lambda r: len(r.requests) == 2)
            await set_policy(pool, "webhooks.retry_schedule_s", [1, 1, 3600])
            await down.wait_for(lambda r: len(r.requests) == 3, within=10)

            async def waits_an_hour() -> bool:
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT attempts, status, next_attempt_at - now() AS wait"
                        " FROM webhook_deliveries"
                    )
                return (row["attempts"], row["status"]) == (3, "pending") and row[
                    "wait"
                ] > timedelta(minutes=59)

            await eventually(waits_an_hour)
            await asyncio.sleep(0.5)  # the environment's 0.2 s would have retried by now
            assert len(down.requests) == 3
    finally:
        await down.close()


async def test_top_up_bounds_refuse_a_pack_outside_the_buyers_policy(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """No free-amount top-up exists, so `topup.min_rcc`/`max_rcc` bound the pack bought
    (by Checkout or auto top-up): X's own max of 500 refuses Medium (550), the free
    plan's min of 200 refuses Small (100) until X's own min of 100 allows it; Y, on the
    free plan too, may buy Medium."""
    x = await sign_up(client)
    await set_policy(pool, "topup.max_rcc", 500, "user", x.user_id)
    await set_policy(pool, "topup.min_rcc", 200, "plan", "free")

    async def auto_topup(member: Any, pack: str) -> httpx.Response:
        body = {"enabled": True, "threshold_rcc": 50, "pack": pack}
        return await client.put("/me/auto-topup", json=body, headers=member.headers)

    for pack, bound in (("M", {"max_rcc": 500}), ("S", {"min_rcc": 200})):
        refused = await auto_topup(x, pack)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "topup_out_of_bounds"
        assert bound.items() <= refused.json().items()
    bought = await client.post("/checkout/topup", json={"pack": "M"}, headers=x.headers)
    assert bought.status_code == 422 and bought.json()["error"] == "topup_out_of_bounds"
    await set_policy(pool, "topup.min_rcc", 100, "user", x.user_id)  # user beats plan
    assert (await auto_topup(x, "S")).status_code == 200
    y = await sign_up(client)
    assert (await auto_topup(y, "M")).status_code == 200
