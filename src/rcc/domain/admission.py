"""Admitting a job: what creating it writes to its wallet and its own stream.

Pure: the same decision runs for one command in its own transaction and for each
command of a coalesced batch, in order, against the wallet state the previous ones left.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from rcc.domain import wallet as wallets
from rcc.domain.blocking import account_block
from rcc.domain.daily import daily_limit_refusal, day_of
from rcc.domain.errors import DomainError, Invalid
from rcc.domain.events import AdminBypassed, CreditsReserved, Event, JobCreated
from rcc.domain.prices import JOB_PRICES_RCC, job_cost
from rcc.domain.template_runs import TemplateRun
from rcc.domain.user import UserState
from rcc.domain.workflow import WorkflowBlob, too_large, workflow_blob


class Admitted(msgspec.Struct, frozen=True, kw_only=True):
    charge: list[Event]  # for the wallet stream: the reserve, or the admin's bypass line
    created: JobCreated  # for the new job stream
    wallet_after: wallets.WalletState
    workflow: WorkflowBlob | None = None  # to store once, by digest, with the events


def admit_job(
    *,
    user: UserState,
    wallet: wallets.WalletState,
    job_id: str,
    job_type: str,
    workflow: dict[str, object],
    metadata: dict[str, object],
    max_open_jobs: int | None,
    max_workflow_bytes: int,
    now: datetime,
    price_rcc: int | None = None,  # a raw job's price by policy (h6); None: the built-in table
    daily_limit_rcc: int | None = None,  # the plan's or a policy's limit (h6); None: none
    template: TemplateRun | None = None,
    queue_priority: int = 0,  # h16: the plan's dispatch priority (rcc/queue_order.py)
) -> Admitted | DomainError:
    """Reserve the job's cost, or record ADMIN_BYPASS for an admin; refuse when the
    account is blocked, the workflow is too large, the type is unknown, too many jobs
    are open, today's limit would be passed, or the balance cannot cover it. The job's
    event keeps the workflow's digest, not its body."""
    if blocked := account_block(user):
        return blocked
    blob = workflow_blob(workflow) if workflow else None
    if blob is not None and (refused_size := too_large(blob, max_workflow_bytes)):
        return refused_size
    cost = job_cost(job_type) if template is None else template.price_rcc
    if cost is None:
        return Invalid(detail=f"type must be one of {sorted(JOB_PRICES_RCC)}")
    if template is None and price_rcc is not None:
        cost = price_rcc  # a raw job's price by policy; a template's is its own rule
    if too_many := wallets.open_job_limit(wallet, max_open_jobs):
        return too_many
    if not user.is_admin and (over := daily_limit_refusal(wallet, cost, daily_limit_rcc, now)):
        return over
    draws: tuple[tuple[str, int], ...] = ()
    if user.is_admin:
        charge: list[Event] = [AdminBypassed(job=job_id)]
    else:
        day = day_of(now) if daily_limit_rcc is not None else ""  # counted under a limit
        reserved = wallets.reserve(wallet, job_id, cost, now, day)
        if isinstance(reserved, DomainError):
            return reserved
        charge = reserved
        draws = next(e.draws for e in reserved if isinstance(e, CreditsReserved))
    created = JobCreated(
        job_id=job_id,
        user_id=user.user_id,
        wallet_id=wallet.wallet_id,
        job_type=job_type,
        cost_rcc=cost,
        bypass=user.is_admin,
        metadata=metadata,
        workflow_digest=blob.hex if blob else "",
        draws=draws,
        template=template.template_id if template else "",
        template_version=template.version if template else 0,
        template_inputs=template.values if template else {},
        price_rule=template.price_rule if template else {},
        required_tags=template.required_tags if template else (),
        queue_priority=queue_priority,
    )
    return Admitted(
        charge=charge, created=created, wallet_after=wallets.fold(charge, wallet), workflow=blob
    )
