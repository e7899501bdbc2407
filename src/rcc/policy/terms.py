"""What the job path reads from policies: a job's price, the daily limit and the
number of unfinished jobs allowed, for each user of a transaction, in one step."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from rcc.domain.daily import DailySpend, resets_at, used_today
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.policy.book import PolicyBook, int_or_none, resolve
from rcc.policy.store import book_and_plans


class JobTerms(msgspec.Struct, frozen=True, kw_only=True):
    """One user's terms for new jobs, resolved at `at` (user > org > plan > global)."""

    plan: str
    prices: dict[str, int]
    daily_limit_rcc: int | None
    # Unfinished jobs at creation (None: RCC_MAX_QUEUED_JOBS_PER_USER). The running
    # limit (jobs.max_running) applies at dispatch, in SQL (rcc_policy_values_v1), not
    # here.
    max_queued: int | None = None
    queue_priority: int = 0  # h16: dispatch priority among equally served payers


def terms_for(
    book: PolicyBook,
    user_id: str,
    plan: str,
    at: datetime,
    org: str | None = None,
) -> JobTerms:
    """The terms from a book for one user on `plan` at `at`."""

    def value(key: str, **default: None) -> int | None:
        return int_or_none(resolve(book, key, user=user_id, org=org, plan=plan, at=at, **default))

    prices = {t: value(f"price.{t}") for t in JOB_PRICES_RCC}
    return JobTerms(
        plan=plan,
        prices={t: p for t, p in prices.items() if p is not None},
        daily_limit_rcc=value("limits.daily_rcc"),
        max_queued=value("jobs.max_queued", default=None),
        queue_priority=value("queue.priority") or 0,
    )


class _Memo(msgspec.Struct):
    since: datetime
    until: datetime | None  # the book's next dated change: the terms hold until then
    terms: dict[tuple[str, str], JobTerms]


# Terms already resolved, per book (a new book is loaded whenever the policies stream
# moves) and per (user, plan), until a dated setting of the book takes effect: every
# job creation asks, and resolving its six keys was most of the job path's policy cost.
_memos: weakref.WeakKeyDictionary[PolicyBook, _Memo] = weakref.WeakKeyDictionary()
_MEMO_SIZE = 50_000  # users remembered per book before starting afresh


def _remembered(book: PolicyBook, now: datetime) -> dict[tuple[str, str], JobTerms]:
    memo = _memos.get(book)
    if memo is None or now < memo.since or (memo.until is not None and now >= memo.until):
        memo = _memos[book] = _Memo(since=now, until=book.next_change(now), terms={})
    elif len(memo.terms) > _MEMO_SIZE:
        memo.terms.clear()
    return memo.terms


async def job_terms(conn: asyncpg.Connection, user_ids: Sequence[str]) -> dict[str, JobTerms]:
    """Every user's terms now: the policy book (cached) and their plans, one round trip."""
    book, plans = await book_and_plans(conn, user_ids)
    now = datetime.now(UTC)
    known = _remembered(book, now)
    found = {}
    for user in user_ids:
        slot = (user, plans[user])
        terms = known.get(slot)
        if terms is None:
            terms = known[slot] = terms_for(book, user, plans[user], now)
        found[user] = terms
    return found


class DailyStanding(msgspec.Struct, frozen=True, kw_only=True):
    used_rcc: int
    limit_rcc: int | None
    resets_at: datetime


async def daily_standing(
    conn: asyncpg.Connection, user_id: str, wallet: DailySpend, is_admin: bool = False
) -> DailyStanding:
    """Today's spending against the user's daily limit (GET /me's `daily`); admins have
    none. Spending is counted while a limit applies (rcc.domain.daily)."""
    now = datetime.now(UTC)
    terms = (await job_terms(conn, [user_id]))[user_id]
    return DailyStanding(
        used_rcc=used_today(wallet, now),
        limit_rcc=None if is_admin else terms.daily_limit_rcc,
        resets_at=resets_at(now),
    )
