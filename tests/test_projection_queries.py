"""What the read models say after real commands, through the queries the portal uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from projections import queries
from projections.paging import BadCursor
from rcc.service import commands as c
from tests.projection_helpers import done, drain, register


async def test_ledger_pages_and_filters(pool: asyncpg.Pool) -> None:
    user = await register(pool, grant=100)
    other = await register(pool, grant=100)
    jobs = [
        str((await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))).result["job_id"])
        for _ in range(7)
    ]
    await done(pool, c.MarkJob(job_id=jobs[0], status="failed", error="boom"))
    await done(pool, c.CreateJob(user_id=other, job_type="VIDEO_TASK"))
    await done(pool, c.AdjustCredits(user_id=user, amount=-3, actor="admin-1", note="goodwill"))
    await drain(pool)
    async with pool.acquire() as conn:
        seen, cursor = [], None
        while True:
            page = await queries.ledger_page(conn, user, cursor=cursor, limit=3)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == 1 + 7 + 1 + 1 and len({e.id for e in seen}) == len(seen)
        assert [(e.created_at, e.id) for e in seen] == sorted(
            ((e.created_at, e.id) for e in seen), reverse=True
        )
        assert {e.user_id for e in seen} == {user}
        assert sum(e.delta for e in seen) == 100 - 7 + 1 - 3
        adjust = (await queries.ledger_page(conn, user, reason="MANUAL_ADJUST")).items
        assert [(a.delta, a.actor, a.note) for a in adjust] == [(-3, "admin-1", "goodwill")]
        of_job = (await queries.ledger_page(conn, user, job_id=jobs[0])).items
        assert sorted(e.reason for e in of_job) == ["JOB_RELEASE", "JOB_RESERVE"]
        future = datetime.now(UTC) + timedelta(hours=1)
        assert not (await queries.ledger_page(conn, user, since=future)).items
        assert len((await queries.ledger_page(conn, user, until=future)).items) == 10
        with pytest.raises(BadCursor):
            await queries.ledger_page(conn, user, cursor="not-a-cursor")


async def test_jobs_rows_follow_the_lifecycle_and_filter(pool: asyncpg.Pool) -> None:
    user = await register(pool, grant=20)
    admin = await register(pool, admin=True)
    ok = str(
        (
            await done(
                pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK", metadata={"prompt": "a cat"})
            )
        ).result["job_id"]
    )
    await done(pool, c.MarkJob(job_id=ok, status="queued"))
    await drain(pool)  # the rest of the lifecycle lands in later batches
    await done(pool, c.MarkJob(job_id=ok, status="running", backend="gpu-1", prompt_id="p-1"))
    await done(
        pool, c.MarkJob(job_id=ok, status="succeeded", output_uris=["o/1.png"], duration_ms=1234)
    )
    bad = str((await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))).result["job_id"])
    await done(pool, c.MarkJob(job_id=bad, status="failed", error="out of memory"))
    free = str(
        (await done(pool, c.CreateJob(user_id=admin, job_type="IMAGE_TASK"))).result["job_id"]
    )
    await drain(pool)
    async with pool.acquire() as conn:
        job = await queries.job(conn, ok, user)
        assert job is not None
        assert (job.status, job.cost_rcc, job.duration_ms, job.output_uris) == (
            "succeeded",
            5,
            1234,
            ["o/1.png"],
        )
        assert (job.backend, job.prompt_id, job.metadata) == ("gpu-1", "p-1", {"prompt": "a cat"})
        assert job.created_at <= job.queued_at <= job.started_at <= job.ended_at  # type: ignore[operator]
        assert await queries.job(conn, ok, admin) is None  # someone else's job is absent
        failed = await queries.job(conn, bad)
        assert failed is not None and (failed.status, failed.error) == ("failed", "out of memory")
        assert failed.duration_ms is None and failed.started_at is None
        bypass = await queries.job(conn, free)
        assert bypass is not None and bypass.bypass and bypass.status == "created"
        mine = await queries.jobs_page(conn, user_id=user)
        assert [j.id for j in mine.items] == [bad, ok]
        assert [j.id for j in (await queries.jobs_page(conn, status="failed")).items] == [bad]
        videos = await queries.jobs_page(conn, user_id=user, type="VIDEO_TASK")
        assert [j.id for j in videos.items] == [ok]
        first = await queries.jobs_page(conn, limit=2)
        assert first.next_cursor is not None
        rest = await queries.jobs_page(conn, limit=2, cursor=first.next_cursor)
        assert [j.id for j in first.items + rest.items] == [free, bad, ok]
        wallet = await queries.balance(conn, user)
        assert wallet is not None
        assert (wallet.balance_rcc, wallet.lifetime_granted, wallet.lifetime_consumed) == (
            15,
            20,
            5,
        )
        assert wallet.jobs_in_flight == 0


async def test_users_payments_logs_and_dashboard(pool: asyncpg.Pool) -> None:
    alice = await register(pool)
    bob = await register(pool, grant=10)
    carol = await register(pool, grant=5)
    await done(
        pool,
        c.GrantCredits(user_id=alice, kind="subscription", amount=50, ref="in_1"),
        metadata={"plan": "pro"},
    )
    await done(pool, c.AdjustCredits(user_id=alice, amount=-50, actor="root", note="test"))
    await done(pool, c.GrantCredits(user_id=bob, kind="topup", amount=25, ref="cs_9", detail="M"))
    await done(pool, c.ClawBack(user_id=bob, amount=40, ref="cs_9"))
    await done(
        pool,
        c.SetAdmin(user_id=alice, is_admin=True, actor="root"),
        metadata={"ip": "203.0.113.5"},
    )
    await done(
        pool,
        c.RecordSignIn(
            method="gitlab",
            email="eve@example.com",
            outcome="refused",
            reason="not on the allowlist",
            ip="198.51.100.1",
        ),
    )
    job = await done(pool, c.CreateJob(user_id=carol, job_type="IMAGE_TASK"))
    await done(pool, c.MarkJob(job_id=str(job.result["job_id"]), status="failed", error="x"))
    await drain(pool)
    async with pool.acquire() as conn:
        a = await queries.user(conn, alice)
        assert a is not None and a.is_admin and a.balance_rcc == 0 and a.plan == "pro"
        assert a.plan_active_until is not None and a.plan_active_until > datetime.now(UTC)
        b = await queries.user(conn, bob)
        assert b is not None and b.balance_rcc == 0 and not b.is_admin and b.plan is None
        assert b.last_activity_at > b.created_at
        found = await queries.users_page(conn, email=a.email[:5].upper())
        assert [u.id for u in found.items] == [alice]
        assert [u.id for u in (await queries.users_page(conn, is_admin=True)).items] == [alice]

        payments = (await queries.payments_page(conn)).items
        assert [
            (p.type, p.status, p.credits_rcc, p.provider, p.external_ref) for p in payments
        ] == [
            ("clawback", "refunded", -35, "stripe", "cs_9"),
            ("topup", "refunded", 25, "stripe", "cs_9"),
            ("subscription", "paid", 50, "stripe", "in_1"),
            ("topup", "paid", 5, "manual", None),
            ("topup", "paid", 10, "manual", None),
        ]
        assert payments[0].detail == "shortfall 5 RCC" and payments[1].detail == "M"
        of_alice = (await queries.payments_page(conn, user_id=alice)).items
        assert [p.user_id for p in of_alice] == [alice]

        logs = (await queries.logs_page(conn)).items
        actions = [(e.action, e.status) for e in logs]
        assert actions[:3] == [
            ("auth.sign_in.gitlab", "refused"),
            ("admin.grant_admin", "ok"),
            ("admin.adjust_credits", "ok"),
        ]
        assert logs[0].ip == "198.51.100.1" and logs[1].ip == "203.0.113.5"
        assert logs[1].actor == "root" and logs[1].user_id == alice
        assert sum(a == ("user.register", "ok") for a in actions) == 3
        refused = await queries.logs_page(conn, status="refused")
        assert [e.action for e in refused.items] == ["auth.sign_in.gitlab"]

        board = await queries.dashboard(conn)
        assert (board.total_users, board.admins) == (3, 1)
        assert board.active_users == 2  # carol has credits, alice an active plan
        assert (board.jobs_24h, board.jobs_7d, board.job_errors_24h) == (1, 1, 1)
        assert (board.rcc_debited_24h, board.rcc_debited_7d) == (0, 0)  # reserved, released
        assert board.payments_7d == 4 and board.sign_ins_refused_24h == 1
        assert len(board.rcc_debited_per_day) == 30 and len(board.rcc_debited_per_week) == 8
        assert board.jobs_per_day[-1].value == 1 and board.jobs_in_flight == 0
        later = await queries.dashboard(conn, now=datetime.now(UTC) + timedelta(days=40))
        assert (later.jobs_24h, later.jobs_7d, later.active_users) == (0, 0, 1)
