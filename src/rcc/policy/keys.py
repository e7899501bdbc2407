"""The policy registry: every key an operator may set, its type, bounds and default.

A value is an int, or a list of ints for schedules; `nullable` keys also take None,
which means "no limit" (or "never" for lot lifetimes). Bounds are checked on every
write, so a price of -1 or a limit of 10^9 is a clear 422, never a stored value."""

from __future__ import annotations

from typing import Literal

import msgspec

from rcc.domain.events import PolicyValue
from rcc.domain.lots import LotPolicy

Kind = Literal["int", "int_list"]
SCOPES: tuple[str, ...] = ("user", "org", "plan", "global")  # narrowest first
FREE_PLAN = "free"  # the plan of everyone without an active subscription


class PolicyKey(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: Kind
    minimum: int
    maximum: int
    default: PolicyValue
    nullable: bool = False  # None allowed: no limit / never
    max_items: int = 0  # int_list only
    unit: str = ""
    description: str = ""


def _int(
    name: str, lo: int, hi: int, default: int | None, unit: str, text: str, nullable: bool = False
) -> PolicyKey:
    return PolicyKey(
        name=name, kind="int", minimum=lo, maximum=hi, default=default, nullable=nullable,
        unit=unit, description=text,
    )  # fmt: skip


_LOTS = LotPolicy()
MAX_RCC = 1_000_000  # no single price, grant or limit is larger (10^9 is refused)

KEYS: dict[str, PolicyKey] = {
    k.name: k
    for k in (
        _int("price.IMAGE_TASK", 1, 100_000, 1, "RCC", "what an image job costs"),
        _int("price.VIDEO_TASK", 1, 100_000, 5, "RCC", "what a video job costs"),
        _int("jobs.max_running", 1, 1_000, 2, "jobs", "jobs on GPU slots at once per account"),
        _int("jobs.max_queued", 1, 10_000, 20, "jobs", "unfinished (queued) jobs per account"),
        _int(
            "queue.priority", 0, 4, 0, "",
            "dispatch weight: up to 1 + value jobs per round-robin round (never starves)",
        ),  # h16: rcc/queue_order.py
        _int("limits.daily_rcc", 1, MAX_RCC, None, "RCC/day", "spending per UTC day", True),
        _int("billing.low_balance_rcc", 0, MAX_RCC, 5, "RCC", "low-balance threshold"),
        _int("grants.signup_rcc", 0, 100_000, 0, "RCC", "credits granted at sign-up"),
        _int("lots.topup_days", 1, 3_650, _LOTS.topup_days, "days", "top-up credit life", True),
        _int("lots.signup_days", 1, 3_650, _LOTS.signup_days, "days", "sign-up credit life", True),
        _int(
            "lots.subscription_rollover_rcc", 0, MAX_RCC, None, "RCC",
            "subscription credits carried into the next month", True,
        ),
        _int("ratelimit.register_per_hour", 1, 10_000, 20, "per hour", "sign-ups per address"),
        _int("ratelimit.login_per_min", 1, 10_000, 10, "per minute", "sign-ins per address"),
        _int("topup.min_rcc", 1, MAX_RCC, 1, "RCC", "smallest top-up"),
        _int("topup.max_rcc", 1, MAX_RCC, 100_000, "RCC", "largest top-up"),
        PolicyKey(
            name="webhooks.retry_schedule_s", kind="int_list", minimum=1, maximum=86_400,
            max_items=30, unit="seconds",
            # 10 s doubling to 4 h, then 8 h: 23.8 h after the first try (the sender's
            # schedule before it became a policy).
            default=[10, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800],
            description="waits between webhook delivery attempts (about a day in all)",
        ),
    )
}  # fmt: skip


def value_problem(key: PolicyKey, value: object) -> str | None:
    """Why `value` cannot be stored for `key` (None: it can)."""
    if value is None:
        return None if key.nullable else f"{key.name} needs a value (it has no 'unlimited')"
    if key.kind == "int":
        return _int_problem(key, value)
    if not isinstance(value, list) or not value:
        return f"{key.name} is a non-empty list of whole numbers"
    if len(value) > key.max_items:
        return f"{key.name} takes at most {key.max_items} items"
    return next((p for item in value if (p := _int_problem(key, item))), None)


def _int_problem(key: PolicyKey, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{key.name} takes whole numbers, not {value!r}"
    if not key.minimum <= value <= key.maximum:
        return f"{key.name} must be between {key.minimum} and {key.maximum}, got {value}"
    return None
