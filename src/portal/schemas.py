"""Request and response bodies: msgspec Structs, kept apart from domain events.

Requests are strict (unknown fields are refused, naming the field); responses list
every field so the OpenAPI schema says exactly what clients get."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from rcc.domain.wallet import MAX_BALANCE_RCC
from rcc.domain.workflow import MAX_NODES

JobType = Literal["IMAGE_TASK", "VIDEO_TASK"]
JobStatus = Literal["created", "queued", "running", "succeeded", "failed", "cancelled"]
Reason = Literal[
    "JOB_RESERVE",
    "JOB_RELEASE",
    "SUBSCRIPTION_GRANT",
    "TOPUP_GRANT",
    "MANUAL_ADJUST",
    "ADMIN_BYPASS",
    "SIGNUP_GRANT",
    "REFUND_CLAWBACK",
    "CREDITS_EXPIRED",
]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base for request bodies: a field we do not know is an error, not a silent no-op."""


class Credentials(Strict, frozen=True, kw_only=True):
    email: str
    password: str


# The shape rcc.domain.workflow checks, for the OpenAPI document only (decoding keeps
# plain dicts): node id -> {"class_type": str, "inputs": {...}}, at least one node.
_WORKFLOW_DOC = msgspec.Meta(
    extra_json_schema={
        "description": "A ComfyUI API-format prompt: node id -> node",
        "examples": [{"1": {"class_type": "EmptyImage", "inputs": {"width": 512}}}],
        "extra": {
            "min_properties": 1,
            "max_properties": MAX_NODES,
            "additional_properties": {
                "type": "object",
                "required": ["class_type"],
                "properties": {
                    "class_type": {"type": "string", "minLength": 1},
                    "inputs": {"type": "object"},
                },
            },
        },
    }
)


class CreateJobBody(Strict, frozen=True, kw_only=True):
    """A raw workflow `{type, workflow}`, or a template `{template, version?, inputs}`."""

    type: JobType | None = None
    workflow: Annotated[dict[str, Any], _WORKFLOW_DOC] | None = None
    template: str | None = None  # h4: a published template's id
    version: int | None = None  # h4: that template's version (default: the current one)
    inputs: dict[str, Any] = {}  # h4: {input name: value}; an upload input takes its id
    wallet: Annotated[str, msgspec.Meta(max_length=100)] | None = None  # h5: org:<id>


class AdminUserPatch(Strict, frozen=True, kw_only=True):
    rcc_delta: Annotated[int, msgspec.Meta(ge=-MAX_BALANCE_RCC, le=MAX_BALANCE_RCC)] | None = None
    reason: str | None = None
    is_admin: bool | None = None
    expires_at: datetime | None = None  # with a positive rcc_delta: a lot that expires then
    blocked: bool | None = None  # h6: block or unblock, with a reason (alone in its patch)


class NextExpiry(msgspec.Struct, frozen=True, kw_only=True):
    amount_rcc: int  # what is left of the lots expiring at that instant
    expires_at: datetime


class DailyUse(msgspec.Struct, frozen=True, kw_only=True):
    used_rcc: int
    limit_rcc: int | None  # None: unlimited
    resets_at: datetime


class Me(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    is_admin: bool
    balance_rcc: int  # what can be spent now: the unexpired lots' remainders
    plan: str | None
    open_jobs: int
    csrf_token: str | None = None
    available_rcc: int = 0  # the same number as balance_rcc
    held_rcc: int = 0  # set aside by open service holds (a job's hold shows on the job)
    next_expiry: NextExpiry | None = None
    daily: DailyUse | None = None  # h6: today's spending against the plan's daily limit
    blocked: bool = False  # h6
    blocked_reason: str = ""
    billing_state: str = "healthy"  # healthy, low_balance or depleted (rcc.domain.billing)


class LotView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    source: str  # signup, topup, subscription, manual, migrated, release
    amount_rcc: int
    remaining_rcc: int
    priority: int  # lower numbers are spent first
    granted_at: datetime | None
    expires_at: datetime | None
    ref: str | None


class Lots(msgspec.Struct, frozen=True, kw_only=True):
    items: list[LotView]  # unexpired lots with something left, in spending order
    available_rcc: int


class SignedIn(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    is_admin: bool
    csrf_token: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """Every error body: a snake_case code and a human sentence, plus details."""

    error: str
    detail: str
