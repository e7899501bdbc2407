"""Organisations under concurrency, on the real store.

* 100 members x 5 jobs race for an org's last credits and their tight budgets, with
  cancels racing too: no wallet below zero, no budget ever exceeded (checked at every
  step of the org's events by a fold written here), the audit passes.
* A member removed while their jobs are being created: no job of theirs charges the
  org after the removal committed (the org stream's order is the commit order of
  everything that touched it).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

import asyncpg

from rcc.audit import verify
from rcc.domain import org as orgs
from rcc.domain.errors import BudgetExceeded, DomainError, Forbidden, InsufficientCredits
from rcc.domain.events import (
    CreditsReleased,
    CreditsReserved,
    LedgerEvent,
    OrgMemberRemoved,
    OrgSpendCharged,
    OrgSpendReturned,
    decode_event,
)
from rcc.domain.prices import job_cost
from rcc.service import commands as c
from rcc.service import org_commands as oc
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import funded_user

COST = job_cost("IMAGE_TASK") or 0
WORKFLOW: dict[str, object] = {"1": {"class_type": "EmptyImage", "inputs": {}}}


async def _done(pool: asyncpg.Pool, cmd: c.Command) -> Done:
    done = await execute(pool, cmd)
    assert isinstance(done, Done), done
    return done


async def _org(pool: asyncpg.Pool, members: int, credits: int) -> tuple[str, str, list[str]]:
    """An org with `credits` RCC and `members` members who joined by invitation."""
    owner = await funded_user(pool, 0)
    org_id = str(uuid.uuid4())
    await _done(pool, oc.CreateOrg(user_id=owner, name="Race", org_id=org_id))
    await _done(pool, oc.AdjustOrgCredits(org_id=org_id, actor="test", amount=credits, note="seed"))

    async def member() -> str:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        user = await funded_user(pool, 0, email=email)
        token = secrets.token_urlsafe(16)
        invite = oc.InviteToOrg(
            org_id=org_id, actor=owner, email=email, role="member",
            invitation_id=str(uuid.uuid4()), token_hash=orgs.token_hash(token), valid_for_s=60,
        )  # fmt: skip
        await _done(pool, invite)
        await _done(pool, oc.AcceptInvitation(user_id=user, token_hash=orgs.token_hash(token)))
        return user

    return org_id, owner, list(await asyncio.gather(*(member() for _ in range(members))))


async def _org_events(conn: asyncpg.Connection, stream: str) -> list[tuple[int, object]]:
    rows = await conn.fetch(
        "SELECT version, type, data FROM events WHERE stream_id = $1 ORDER BY version", stream
    )
    return [(r["version"], decode_event(r["type"], r["data"])) for r in rows]


async def test_a_hundred_members_racing_never_overspend_the_wallet_or_a_budget(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    credits, member_budget, org_budget = 90 * COST + 1, 2 * COST, 95 * COST
    org_id, boss, members = await _org(pool, 100, credits)
    await asyncio.gather(
        *(
            _done(pool, oc.PatchOrgMember(org_id=org_id, actor=boss, user_id=m,
                                          budget_given=True, monthly_budget_rcc=member_budget))
            for m in members
        )
    )  # fmt: skip
    await _done(
        pool,
        oc.PatchOrg(org_id=org_id, actor=boss, budget_given=True, monthly_budget_rcc=org_budget),
    )

    async def attempt(user: str, nth: int) -> tuple[str, object]:
        cmd = c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow=WORKFLOW, org_id=org_id)
        outcome = await execute(pool, cmd)
        if isinstance(outcome, Done) and nth == 0 and int(user[-1], 16) % 4 == 0:
            # Some members cancel their first job at once: credits and budget come back
            # while the others are still racing for them.
            job = outcome.result["job_id"]
            cancelled = await execute(pool, c.MarkJob(job_id=job, status="cancelled"))
            assert isinstance(cancelled, Done), cancelled
            return user, "cancelled"
        return user, outcome

    results = await asyncio.gather(*(attempt(m, n) for m in members for n in range(5)))
    kept = [u for u, r in results if isinstance(r, Done)]
    refused = [r for _, r in results if isinstance(r, DomainError)]
    assert {type(r) for r in refused} <= {InsufficientCredits, BudgetExceeded}
    assert kept and refused and any(isinstance(r, BudgetExceeded) for r in refused)

    # The wallet, from its events alone: never below zero at any point.
    balance, lowest = 0, 0
    wallet_events = await _org_events(owner, f"wallet-{org_id}")
    for _, event in wallet_events:
        if isinstance(event, LedgerEvent):
            balance += event.delta
            lowest = min(lowest, balance)
    assert lowest == 0 and balance == credits - COST * len(kept)
    reserved = sum(isinstance(e, CreditsReserved) for _, e in wallet_events)
    released = sum(isinstance(e, CreditsReleased) for _, e in wallet_events)
    assert reserved - released == len(kept)

    # The budgets, from the org's events: never exceeded at any point of the race.
    used: dict[str, int] = {}
    for _, event in await _org_events(owner, f"org-{org_id}"):
        if isinstance(event, OrgSpendCharged | OrgSpendReturned):
            sign = 1 if isinstance(event, OrgSpendCharged) else -1
            used[event.user_id] = used.get(event.user_id, 0) + sign * event.amount
            assert used[event.user_id] <= member_budget
            assert sum(used.values()) <= org_budget
    assert sum(used.values()) == COST * len(kept)
    assert all(used.get(m, 0) == COST * kept.count(m) for m in members)

    report = await verify(owner)
    assert report.ok, report.problems[:5]


async def test_a_member_removed_while_submitting_cannot_charge_after_the_removal(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    org_id, boss, (member,) = await _org(pool, 1, 1000 * COST)
    cmd = c.CreateJob(user_id=member, job_type="IMAGE_TASK", workflow=WORKFLOW, org_id=org_id)
    jobs = [asyncio.create_task(execute(pool, cmd)) for _ in range(30)]
    # The removal goes in once the first of the member's jobs has been accepted, while
    # the others wait for the org's lock, and more keep coming after it.
    await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    remove = oc.RemoveOrgMember(org_id=org_id, actor=boss, user_id=member)
    removing = asyncio.create_task(execute(pool, remove))
    await asyncio.sleep(0.005)
    jobs += [asyncio.create_task(execute(pool, cmd)) for _ in range(30)]
    removal = await removing
    assert isinstance(removal, Done), removal
    answers = await asyncio.gather(*jobs)
    accepted = [a for a in answers if isinstance(a, Done)]
    refused = [a for a in answers if not isinstance(a, Done)]
    assert accepted and refused, "the removal must land in the middle of the jobs"
    assert all(isinstance(a, Forbidden) for a in refused)

    org_events = await _org_events(owner, f"org-{org_id}")
    removed_at = next(v for v, e in org_events if isinstance(e, OrgMemberRemoved))
    charged = [(v, e) for v, e in org_events if isinstance(e, OrgSpendCharged)]
    assert len(charged) == len(accepted)
    assert all(v < removed_at for v, _ in charged)  # every charge committed before it
    # And on the wallet: exactly the accepted jobs reserved, nothing after the removal.
    wallet_reserves = await owner.fetchval(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'credits_reserved'",
        f"wallet-{org_id}",
    )
    assert wallet_reserves == len(accepted)
    after = await owner.fetchval(
        """SELECT count(*) FROM events e
            WHERE e.stream_id = $1 AND e.type = 'credits_reserved'
              AND (e.tx_id, e.position) > (SELECT tx_id, position FROM events
                                            WHERE stream_id = $2 AND version = $3)""",
        f"wallet-{org_id}",
        f"org-{org_id}",
        removed_at,
    )
    assert after == 0
