"""Plans with limits: each catalog plan (and the implicit free plan) with what policies
give it: monthly credits and price come from the catalog; the daily limit, running and
queued jobs and job prices are plan-scoped policies (docs/POLICIES.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from rcc.domain.catalog import Catalog
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.policy.book import PolicyBook, int_or_none, resolve
from rcc.policy.keys import FREE_PLAN

# The seed products' daily limits (RCC per UTC day), written as plan-scoped policies by
# `rcc policy seed-plans`; None is unlimited. Plans not listed keep the global value.
SEED_DAILY_LIMITS: dict[str, int | None] = {
    FREE_PLAN: 20,
    "starter": 200,
    "pro": 1000,
    "enterprise": None,
}


class PlanLimits(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    currency: str
    price_month: int | None  # minor units; None for the free plan
    price_year: int | None
    credits_per_month: int
    daily_limit_rcc: int | None  # None: unlimited
    max_running_jobs: int
    max_queued_jobs: int
    job_prices: dict[str, int]


def plan_limits(
    book: PolicyBook, plan: str, at: datetime, max_running_default: int
) -> dict[str, object]:
    """The policy half of a plan's limits at `at`."""

    def value(key: str, default: int | None = None) -> int | None:
        if default is None:
            return int_or_none(resolve(book, key, plan=plan, at=at))
        return int_or_none(resolve(book, key, plan=plan, at=at, default=default))

    return {
        "daily_limit_rcc": value("limits.daily_rcc"),
        "max_running_jobs": value("jobs.max_running", max_running_default),
        "max_queued_jobs": value("jobs.max_queued"),
        "job_prices": {t: value(f"price.{t}") for t in JOB_PRICES_RCC},
    }


def plan_table(
    book: PolicyBook, catalog: Catalog, max_running_default: int, at: datetime | None = None
) -> list[PlanLimits]:
    """The free plan, then every catalog plan, side by side (the buy page's table)."""
    when = at or datetime.now(UTC)
    currency = catalog.plans[0].currency if catalog.plans else "usd"
    rows = [
        PlanLimits(
            id=FREE_PLAN, name="Free", currency=currency, price_month=None, price_year=None,
            credits_per_month=0, **plan_limits(book, FREE_PLAN, when, max_running_default),  # type: ignore[arg-type]
        )
    ]  # fmt: skip
    for plan in catalog.plans:
        rows.append(
            PlanLimits(
                id=plan.id, name=plan.name, currency=plan.currency,
                price_month=plan.monthly.price, price_year=plan.annual.price,
                credits_per_month=plan.credits_per_month,
                **plan_limits(book, plan.id, when, max_running_default),  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return rows
