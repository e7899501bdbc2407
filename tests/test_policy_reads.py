"""The keys that used to be read from settings, read through the policy resolver
(docs/POLICIES.md, "Who reads what"): each test changes a policy and shows the running
code follows it, for the scope it was set for and no other, without a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path

import asyncpg
import httpx

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
from tests.helpers import funded_user
from tests.portal_helpers import grant, sign_up
from tests.projection_helpers import drain
from tests.test_gpu_pool import sample_slots

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


async def test_a_users_max_running_by_policy_holds_at_dispatch_and_others_keep_theirs(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """X (user policy: 1) never has two jobs on GPU slots at once; Y (no policy: the
    adapter's RCC_MAX_RUNNING_JOBS_PER_USER, 2) does, on a backend with 4 free slots."""
    x, y = await funded_user(pool, 20), await funded_user(pool, 20)
    await set_policy(pool, "jobs.max_running", 1, "user", x)
    await drain(pool, [POLICY_VALUES])  # the claim reads the policy_values read model
    async with (
        ComfyServer(silent_seconds={"ImageBlur": 0.3}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], slots=4, max_running_per_user=2)),
    ):
        jobs = [await create_job(pool, user, SLOW) for user in (x, y) for _ in range(4)]
        samples: list[Counter[str]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_slots(pool, samples, stop))
        for job in jobs:
            assert await wait_status(pool, job, "succeeded", within=30) == "succeeded"
        stop.set()
        await sampler
    assert max(s[x] for s in samples) == 1, "X ran two jobs at once"
    assert max(s[y] for s in samples) == 2, "Y never used its two slots"


async def test_a_replay_of_policy_values_resolves_every_value_as_the_log_does(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """The SQL resolver over the replayed read model answers what rcc.policy.resolve
    answers from the events, for every scope combination at every instant that matters
    (each setting's start, just before it, now, after a scheduled change)."""
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
    compared = 0
    for key in ("jobs.max_running", "limits.daily_rcc"):
        for user, org, plan, at in product((u1, u2, None), ("o1", None), ("free", "pro"), instants):
            row = await owner.fetchrow(
                "SELECT v IS NULL AS unset, v FROM rcc_policy_value_v1($1, $2, $3, $4, $5) v",
                key, user, org, plan, at,
            )  # fmt: skip
            expected = resolve(book, key, user=user, org=org, plan=plan, at=at, default=unset)
            assert (unset if row["unset"] else row["v"]) == expected, (key, user, org, plan, at)
            compared += 1
    assert compared == 2 * 3 * 2 * 2 * len(instants)
