"""Commands: what a caller asks for. Plain data, validated by the handlers' decisions."""

from __future__ import annotations

from datetime import datetime

import msgspec

from rcc.domain.events import ExecutionLogLine
from rcc.domain.lots import LotPolicy
from rcc.domain.metered import OutputUsage
from rcc.domain.template_runs import TemplateRun
from rcc.domain.workflow import DEFAULT_MAX_WORKFLOW_BYTES


class Command(msgspec.Struct, frozen=True, kw_only=True):
    pass


class RegisterUser(Command, frozen=True, kw_only=True):
    email: str
    is_admin: bool = False
    signup_grant_rcc: int = 0
    lots: LotPolicy = LotPolicy()  # how long the sign-up grant lasts (settings.lots)


class SetAdmin(Command, frozen=True, kw_only=True):
    user_id: str
    is_admin: bool
    actor: str


class PatchUser(Command, frozen=True, kw_only=True):
    """An admin's change to a user: an adjustment (with its note) and/or the admin flag,
    decided and committed together so a retry or a failure never leaves half of it."""

    user_id: str
    actor: str
    rcc_delta: int | None = None
    note: str = ""
    is_admin: bool | None = None
    expires_at: datetime | None = None  # a positive rcc_delta's lot expires then


class GrantCredits(Command, frozen=True, kw_only=True):
    """A grant from money or policy: kind is topup, subscription or signup."""

    user_id: str
    kind: str
    amount: int
    ref: str | None = None
    detail: str | None = None  # the pack or the subscription period
    lots: LotPolicy = LotPolicy()


class AdjustCredits(Command, frozen=True, kw_only=True):
    user_id: str
    amount: int
    actor: str
    note: str
    expires_at: datetime | None = None


class ClawBack(Command, frozen=True, kw_only=True):
    user_id: str
    amount: int
    ref: str | None = None


class CreateJob(Command, frozen=True, kw_only=True):
    user_id: str
    job_type: str
    workflow: dict[str, object] = {}
    metadata: dict[str, object] = {}
    job_id: str | None = None  # chosen by the caller for tests; generated otherwise
    max_open_jobs: int | None = None  # RCC_MAX_QUEUED_JOBS_PER_USER, checked under the lock
    max_workflow_bytes: int = DEFAULT_MAX_WORKFLOW_BYTES  # RCC_MAX_WORKFLOW_BYTES
    org_id: str | None = None  # h5: charge this organisation's wallet (the caller's own: None)
    template: TemplateRun | None = None  # h4: built from a template, at its price


class RecordSignIn(Command, frozen=True, kw_only=True):
    method: str
    email: str
    outcome: str
    reason: str = ""
    user_id: str | None = None
    ip: str | None = None


class MarkJob(Command, frozen=True, kw_only=True):
    """Move a job along its lifecycle: queued, running, succeeded, failed or cancelled."""

    job_id: str
    status: str
    error: str | None = None
    output_uris: list[str] = []
    duration_ms: int | None = None
    backend: str | None = None
    prompt_id: str | None = None
    actor: str | None = None
    # On success: what the job's hold captures (≤ its price; None: all of it), so a
    # metered price can charge less than it held. The rest comes back (JOB_RELEASE).
    charged_rcc: int | None = None
    # On success: what the outputs show was produced; a template's metered price
    # captures by it (rcc.domain.job.captured). The adapter reports facts, the core prices.
    usage: OutputUsage | None = None


class RecordPrompt(Command, frozen=True, kw_only=True):
    """The adapter is about to POST a job to a ComfyUI backend under `prompt_id`."""

    job_id: str
    backend: str
    prompt_id: str
    client_id: str


class RecordPromptLost(Command, frozen=True, kw_only=True):
    """The backend lost the job's prompt `prompt_id`: forget it, start the next attempt."""

    job_id: str
    prompt_id: str
    reason: str


class RecordExecutionLog(Command, frozen=True, kw_only=True):
    """Append lines to a job's execution log (allowed on ended jobs too)."""

    job_id: str
    prompt_id: str | None = None
    lines: list[ExecutionLogLine] = []


class ExpireLot(Command, frozen=True, kw_only=True):
    """Write CREDITS_EXPIRED for what is left of a lot whose expiry has come (scheduler)."""

    wallet_id: str
    lot: str
