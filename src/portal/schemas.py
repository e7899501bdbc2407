"""Request and response bodies: msgspec Structs, kept apart from domain events.

Requests are strict (unknown fields are refused, naming the field); responses list
every field so the OpenAPI schema says exactly what clients get."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

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
]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base for request bodies: a field we do not know is an error, not a silent no-op."""


class Credentials(Strict, frozen=True, kw_only=True):
    email: str
    password: str


class CreateJobBody(Strict, frozen=True, kw_only=True):
    type: JobType
    workflow: dict[str, Any]


class AdminUserPatch(Strict, frozen=True, kw_only=True):
    rcc_delta: int | None = None
    reason: str | None = None
    is_admin: bool | None = None


class Me(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    is_admin: bool
    balance_rcc: int
    plan: str | None
    open_jobs: int
    csrf_token: str | None = None


class SignedIn(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    is_admin: bool
    csrf_token: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """Every error body: a snake_case code and a human sentence, plus details."""

    error: str
    detail: str
