"""Command handlers: `async def handle(cmd, uow) -> result | DomainError`.

Each handler locks the heads it writes, decides with the pure domain functions and
stages events; `execute` commits them with the idempotency record in one transaction.
The routing table at the bottom shows which handler answers which command.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from rcc.autotopup.commands import AUTOTOPUP_HANDLERS
from rcc.domain import job as jobs
from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.admission import Admitted, admit_job
from rcc.domain.errors import Conflict, DomainError, IllegalTransition, Invalid, NotFound
from rcc.domain.events import (
    AdminStatusChanged,
    Event,
    GrantEvent,
    JobCancelled,
    JobExecutionLogged,
    JobFailed,
    JobPromptSubmitted,
    JobQueued,
    JobSettled,
    JobStarted,
    JobSucceeded,
    LedgerEvent,
    SignInAttempted,
    SignupGranted,
    SubscriptionGranted,
    TopupGranted,
    UserRegistered,
    WalletOpened,
    job_stream,
    user_stream,
    wallet_stream,
)
from rcc.domain.lots import lifetime
from rcc.domain.subscription_months import month_grant
from rcc.policy.terms import JobTerms, job_terms
from rcc.service import commands as c
from rcc.service import org_spending
from rcc.service.admin_handlers import patch_user
from rcc.service.backend_handlers import BACKEND_HANDLERS
from rcc.service.holds import HOLD_HANDLERS
from rcc.service.lot_window import decide_on_enough_lots
from rcc.service.ops_handlers import OPS_HANDLERS
from rcc.service.org_customer_commands import ORG_CUSTOMER_HANDLERS
from rcc.service.org_handlers import ORG_HANDLERS
from rcc.service.payment_handlers import PAYMENT_HANDLERS
from rcc.service.policy_handlers import POLICY_HANDLERS
from rcc.service.pool_handlers import POOL_HANDLERS
from rcc.service.template_handlers import TEMPLATE_HANDLERS
from rcc.store.event_store import Checkpoint
from rcc.store.lot_expiries import schedule_expiries
from rcc.store.unit_of_work import UnitOfWork
from rcc.store.wallet_lots import FRONT_LOTS
from rcc.webhooks.commands import WEBHOOK_HANDLERS


class UserCreated(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    wallet_id: str
    email: str


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    cost_rcc: int
    bypass: bool
    balance_rcc: int


class JobMoved(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    status: str
    released_rcc: int = 0


class PromptRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """The job's prompt: `new` when this command recorded it, else the one recorded earlier."""

    job_id: str
    backend: str
    prompt_id: str
    new: bool


class WalletMoved(msgspec.Struct, frozen=True, kw_only=True):
    wallet_id: str
    delta: int
    balance_rcc: int
    shortfall: int = 0


class Done(msgspec.Struct, frozen=True, kw_only=True):
    """A command's answer and the checkpoint of its last event (for read-your-writes)."""

    result: Any
    checkpoint: Checkpoint
    replayed: bool = False  # True when an idempotency key returned the first answer
    recorded_at: datetime | None = None  # when the command's events were recorded


def _fold_wallet(state: wallets.WalletState, events: list[Event]) -> wallets.WalletState:
    return wallets.fold(events, state)


async def register_user(cmd: c.RegisterUser, uow: UnitOfWork) -> UserCreated | DomainError:
    email = users.normalise_email(cmd.email)
    if email is None:
        return Invalid(detail=f"{cmd.email!r} is not an email address")
    if cmd.signup_grant_rcc < 0:
        return Invalid(detail="the sign-up grant cannot be negative")
    # The email row is the uniqueness guard; it waits for a concurrent twin and loses.
    user_id = str(uuid.uuid4())
    taken = await uow.conn.fetchval(
        """INSERT INTO user_emails (email, user_id) VALUES ($1, $2)
           ON CONFLICT (email) DO NOTHING RETURNING false""",
        email,
        user_id,
    )
    if taken is None:
        return Conflict(detail=f"{email} is already registered")
    wallet_id = user_id  # a user's own wallet; org wallets get their own ids later
    registered = UserRegistered(
        user_id=user_id, email=email, wallet_id=wallet_id, is_admin=cmd.is_admin
    )
    opened: list[Event] = [
        WalletOpened(wallet_id=wallet_id, owner_kind="user", owner_id=user_id, lots=True)
    ]
    if cmd.signup_grant_rcc > 0:
        opened += wallets.grant(
            wallets.fold(opened), SignupGranted, cmd.signup_grant_rcc, _now(),
            lifetime=lifetime(cmd.lots, "signup"),
        )  # fmt: skip
    uow.stage(user_stream(user_id), 0, [registered], users.evolve(users.UserState(), registered))
    after = wallets.fold(opened)
    uow.stage(wallet_stream(wallet_id), 0, opened, after)
    await schedule_expiries(uow.conn, wallet_id, after, opened)
    return UserCreated(user_id=user_id, wallet_id=wallet_id, email=email)


async def set_admin(cmd: c.SetAdmin, uow: UnitOfWork) -> UserCreated | DomainError:
    stream = user_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    user = head.as_state(users.UserState)
    if not user.registered:
        return NotFound(detail="user not found")
    if user.is_admin != cmd.is_admin:
        event = AdminStatusChanged(user_id=cmd.user_id, is_admin=cmd.is_admin, actor=cmd.actor)
        uow.stage(stream, head.version, [event], users.evolve(user, event))
    return UserCreated(user_id=user.user_id, wallet_id=user.wallet_id, email=user.email)


async def _lock_user_wallet(
    uow: UnitOfWork, user_id: str, front: int | None = None
) -> tuple[users.UserState, wallets.WalletState, int] | NotFound:
    """The user and its wallet, the wallet's head locked for this transaction (with
    all its lots, or the `front` ones: see rcc.store.wallet_lots)."""
    found = await uow.lock_wallet_of(user_stream(user_id), front=front)
    if found is None:
        return NotFound(detail="user not found")
    user_head, _, wallet_head = found
    user = user_head.as_state(users.UserState)
    wallet = wallet_head.as_state(wallets.WalletState)
    if not user.registered or not wallet.opened:
        return NotFound(detail="user not found")
    return user, wallet, wallet_head.version


async def _move_wallet(
    uow: UnitOfWork,
    user_id: str,
    decide: Callable[[wallets.WalletState], list[Event] | DomainError],
) -> WalletMoved | DomainError:
    loaded = await _lock_user_wallet(uow, user_id)
    if isinstance(loaded, DomainError):
        return loaded
    _, wallet, version = loaded
    events = decide(wallet)
    if isinstance(events, DomainError):
        return events
    after = _fold_wallet(wallet, events)
    uow.stage(wallet_stream(wallet.wallet_id), version, events, after)
    await schedule_expiries(uow.conn, wallet.wallet_id, after, events)
    shortfall = sum(getattr(e, "shortfall", 0) for e in events)
    return WalletMoved(
        wallet_id=wallet.wallet_id,
        delta=after.balance - wallet.balance,
        balance_rcc=after.balance,
        shortfall=shortfall,
    )


_GRANTS: dict[str, type[GrantEvent]] = {
    "topup": TopupGranted,
    "subscription": SubscriptionGranted,
    "signup": SignupGranted,
}


async def grant_credits(cmd: c.GrantCredits, uow: UnitOfWork) -> WalletMoved | DomainError:
    grant_type = _GRANTS.get(cmd.kind)
    if grant_type is None:
        return Invalid(detail=f"unknown grant kind {cmd.kind!r}; one of {sorted(_GRANTS)}")
    if error := wallets.grant_amount_error(cmd.amount):
        return error
    extra: dict[str, Any] = {}
    if grant_type is TopupGranted:
        extra["pack"] = cmd.detail
    elif grant_type is SubscriptionGranted:
        extra["period"] = cmd.detail
    last = lifetime(cmd.lots, cmd.kind)
    if grant_type is SubscriptionGranted:
        # A month ends the earlier months' lots, with an optional rollover.
        return await _move_wallet(
            uow,
            cmd.user_id,
            lambda w: month_grant(
                w, cmd.amount, _now(), lifetime=last,
                rollover_cap=cmd.lots.subscription_rollover_rcc, ref=cmd.ref, period=cmd.detail,
            ),
        )  # fmt: skip
    # The lot's time is taken under the wallet's lock, so lots are dated in stream order.
    return await _move_wallet(
        uow,
        cmd.user_id,
        lambda w: wallets.grant(
            w, grant_type, cmd.amount, _now(), lifetime=last, ref=cmd.ref, **extra
        ),
    )


async def adjust_credits(cmd: c.AdjustCredits, uow: UnitOfWork) -> WalletMoved | DomainError:
    return await _move_wallet(
        uow,
        cmd.user_id,
        lambda w: wallets.adjust(w, cmd.amount, cmd.actor, cmd.note, _now(), cmd.expires_at),
    )


async def claw_back(cmd: c.ClawBack, uow: UnitOfWork) -> WalletMoved | DomainError:
    if cmd.amount <= 0:
        return Invalid(detail="a clawback must be a positive whole number of RCC")
    return await _move_wallet(
        uow, cmd.user_id, lambda w: wallets.claw_back(w, cmd.amount, cmd.ref, _now())
    )


async def create_job(cmd: c.CreateJob, uow: UnitOfWork) -> JobAccepted | DomainError:
    """Reserve the job's cost (or record ADMIN_BYPASS for an admin) and create the job."""
    if cmd.org_id is not None:
        return await _create_org_job(cmd, uow, cmd.org_id)
    loaded = await _lock_user_wallet(uow, cmd.user_id, FRONT_LOTS)
    if isinstance(loaded, DomainError):
        return loaded
    user, wallet, version = loaded
    terms = await job_terms(uow.conn, [cmd.user_id])  # prices and limits by policy (h6)
    admitted, _ = await decide_on_enough_lots(  # the front lots, more if short (h9)
        uow, wallet, lambda w: admit(cmd, user, w, terms[cmd.user_id])
    )
    if isinstance(admitted, DomainError):
        return admitted
    stage_admission(uow, admitted, version)
    return accepted(admitted)


async def _create_org_job(
    cmd: c.CreateJob, uow: UnitOfWork, org_id: str
) -> JobAccepted | DomainError:
    """A job on an organisation's wallet (h5): membership and budgets are checked under
    the org's lock, taken with the wallet's (see org_spending)."""
    charge = await org_spending.lock_org_wallet(uow, cmd.user_id, org_id)
    if isinstance(charge, DomainError):
        return charge
    # Prices by the member's policies (h6); the org's budgets, not the member's daily
    # limit, bound what they spend from it (its running limit is the dispatcher's).
    terms = (await job_terms(uow.conn, [cmd.user_id]))[cmd.user_id]
    terms = msgspec.structs.replace(terms, daily_limit_rcc=None)
    admitted = admit(cmd, charge.user, charge.wallet, terms)
    if isinstance(admitted, DomainError):
        return admitted
    budgeted = org_spending.charge_budget(uow, charge, admitted, _now())
    if isinstance(budgeted, DomainError):
        return budgeted
    stage_admission(uow, budgeted, charge.wallet_version)
    return accepted(budgeted)


def admit(
    cmd: c.CreateJob,
    user: users.UserState,
    wallet: wallets.WalletState,
    terms: JobTerms | None = None,
) -> Admitted | DomainError:
    """The pure decision for one CreateJob against the wallet as it stands, on the
    user's terms (policy prices and limits) when given."""
    max_open = cmd.max_open_jobs  # the queue depth: jobs wait their turn at dispatch
    if terms is not None and terms.max_queued is not None and not user.is_admin:
        max_open = terms.max_queued
    return admit_job(
        user=user,
        wallet=wallet,
        job_id=cmd.job_id or str(uuid.uuid4()),
        job_type=cmd.job_type,
        workflow=cmd.workflow,
        metadata=cmd.metadata,
        max_open_jobs=max_open,
        max_workflow_bytes=cmd.max_workflow_bytes,
        now=_now(),
        price_rcc=terms.prices.get(cmd.job_type) if terms else None,
        daily_limit_rcc=terms.daily_limit_rcc if terms else None,
        template=cmd.template,
        queue_priority=terms.queue_priority if terms else 0,
    )


def stage_admission(
    uow: UnitOfWork,
    admitted: Admitted,
    wallet_version: int,
    metadata: dict[str, Any] | None = None,
) -> None:
    created = admitted.created
    uow.stage(
        wallet_stream(created.wallet_id),
        wallet_version,
        admitted.charge,
        admitted.wallet_after,
        metadata,
    )
    uow.stage(
        job_stream(created.job_id), 0, [created], jobs.evolve(jobs.JobState(), created), metadata
    )
    if admitted.workflow is not None:
        uow.keep_workflow(admitted.workflow)


def accepted(admitted: Admitted) -> JobAccepted:
    created = admitted.created
    return JobAccepted(
        job_id=created.job_id,
        cost_rcc=created.cost_rcc,
        bypass=created.bypass,
        balance_rcc=admitted.wallet_after.balance,
    )


def _job_event(cmd: c.MarkJob, captured: int) -> Event:
    match cmd.status:
        case "queued":
            return JobQueued(job_id=cmd.job_id)
        case "running":
            return JobStarted(job_id=cmd.job_id, backend=cmd.backend, prompt_id=cmd.prompt_id)
        case "succeeded":
            return JobSucceeded(
                job_id=cmd.job_id,
                output_uris=cmd.output_uris,
                duration_ms=cmd.duration_ms,
                charged_rcc=captured,
            )
        case "failed":
            return JobFailed(job_id=cmd.job_id, error=cmd.error or "failed")
        case _:
            return JobCancelled(job_id=cmd.job_id, actor=cmd.actor)


async def mark_job(cmd: c.MarkJob, uow: UnitOfWork) -> JobMoved | DomainError:
    """Move a job. A job is a hold on its wallet: success captures it (the whole price,
    or `charged_rcc` of it, the rest coming back), failing or cancelling voids it, in the
    same transaction. A terminal job refuses every move, so a hold ends at most once."""
    if cmd.status not in {"queued", "running", "succeeded", "failed", "cancelled"}:
        return Invalid(detail=f"unknown job status {cmd.status!r}")
    stream = job_stream(cmd.job_id)
    job_head = await uow.peek(stream)
    job = job_head.as_state(jobs.JobState)
    if not job.status:
        return NotFound(detail="job not found")
    wallet_id = wallet_stream(job.wallet_id)
    org_id = org_spending.org_stream_of(job)  # h5: an org job's budget comes back with it
    # Only the lots the job drew from: its end returns to them or unpins them (h9).
    drew = {wallet_id: [lot for lot, _ in job.draws]}
    heads = await uow.lock(stream, wallet_id, org_id, lots_of=drew)
    job = heads[stream].as_state(jobs.JobState)  # re-read under the lock
    if refused := jobs.check_transition(job, cmd.status):
        return refused
    captured = jobs.captured(job, cmd.status, cmd.charged_rcc, cmd.usage)
    if isinstance(captured, DomainError):
        return captured
    event = _job_event(cmd, captured)
    uow.stage(stream, heads[stream].version, [event], jobs.evolve(job, event))
    released = jobs.held(job) - captured if cmd.status in jobs.TERMINAL else 0
    wallet = heads[wallet_id].as_state(wallets.WalletState)
    closing = _closing_events(wallet, job, cmd.status, released, captured)
    if closing:
        after = _fold_wallet(wallet, closing)
        uow.stage(wallet_id, heads[wallet_id].version, closing, after)
        await schedule_expiries(uow.conn, job.wallet_id, after, closing)
        org_spending.give_budget_back(uow, heads[org_id], job, released)
    return JobMoved(job_id=cmd.job_id, status=cmd.status, released_rcc=released)


def _closing_events(
    wallet: wallets.WalletState, job: jobs.JobState, status: str, released: int, captured: int
) -> list[Event]:
    """What the wallet records when a job ends: the release of what its hold does not
    capture (exactly its draws, or the rest of them after a partial capture), or that
    it settled (captured in full: it no longer counts as open). Nothing while it runs."""
    if status not in jobs.TERMINAL:
        return []
    if released:
        return wallets.release(wallet, job.job_id, released, _now(), job.draws, captured)
    return [JobSettled(job=job.job_id, draws=tuple(job.draws))]


async def expire_lot(cmd: c.ExpireLot, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """CREDITS_EXPIRED for a lot whose time has come; nothing if it was drawn, expired
    already or is not due yet (any number of schedulers may ask)."""
    stream = wallet_stream(cmd.wallet_id)
    head = (await uow.lock(stream))[stream]
    wallet = head.as_state(wallets.WalletState)
    if not wallet.opened:
        return NotFound(detail="wallet not found")
    events = wallets.expire(wallet, cmd.lot, _now())
    if events:
        uow.stage(stream, head.version, events, _fold_wallet(wallet, events))
    expired = sum(-e.delta for e in events if isinstance(e, LedgerEvent))
    return {"wallet_id": cmd.wallet_id, "lot": cmd.lot, "expired_rcc": expired}


def _now() -> datetime:
    return datetime.now(UTC)


async def record_prompt(cmd: c.RecordPrompt, uow: UnitOfWork) -> PromptRecorded | DomainError:
    """Record the prompt id before the adapter submits; a job gets at most one prompt,
    so a second dispatcher (or a restart) learns the first prompt instead of submitting."""
    stream = job_stream(cmd.job_id)
    head = (await uow.lock(stream))[stream]
    job = head.as_state(jobs.JobState)
    if not job.status:
        return NotFound(detail="job not found")
    if job.status in jobs.TERMINAL:
        return IllegalTransition(
            detail=f"a {job.status} job is not submitted", status=job.status, requested="submit"
        )
    if job.prompt_id:
        return PromptRecorded(
            job_id=cmd.job_id, backend=job.backend, prompt_id=job.prompt_id, new=False
        )
    event = JobPromptSubmitted(
        job_id=cmd.job_id, backend=cmd.backend, prompt_id=cmd.prompt_id, client_id=cmd.client_id
    )
    uow.stage(stream, head.version, [event], jobs.evolve(job, event))
    return PromptRecorded(job_id=cmd.job_id, backend=cmd.backend, prompt_id=cmd.prompt_id, new=True)


async def record_execution_log(
    cmd: c.RecordExecutionLog, uow: UnitOfWork
) -> dict[str, int] | DomainError:
    """Append execution-log lines to a job's stream; the job's status does not change."""
    if not cmd.lines:
        return Invalid(detail="no log lines")
    stream = job_stream(cmd.job_id)
    head = (await uow.lock(stream))[stream]
    job = head.as_state(jobs.JobState)
    if not job.status:
        return NotFound(detail="job not found")
    event = JobExecutionLogged(job_id=cmd.job_id, prompt_id=cmd.prompt_id, lines=cmd.lines)
    uow.stage(stream, head.version, [event], job)
    return {"lines": len(cmd.lines)}


async def record_sign_in(cmd: c.RecordSignIn, uow: UnitOfWork) -> dict[str, str]:
    attempt = str(uuid.uuid4())
    event = SignInAttempted(
        method=cmd.method,
        email=cmd.email.strip().lower()[:254],
        outcome=cmd.outcome,
        reason=cmd.reason,
        user_id=cmd.user_id,
        ip=cmd.ip,
    )
    uow.stage(f"signin-{attempt}", 0, [event])
    return {"attempt": attempt}


Handler = Callable[[Any, UnitOfWork], Awaitable[Any]]

HANDLERS: dict[type[c.Command], Handler] = {
    **PAYMENT_HANDLERS,  # payment_handlers.py: Stripe facts and the monthly grants
    **OPS_HANDLERS,  # ops_handlers.py: the ComfyUI container and the model files
    **POLICY_HANDLERS,  # policy_handlers.py: policies and blocking (h6)
    **HOLD_HANDLERS,  # holds.py: service holds (authorize, capture, void) and usage
    **BACKEND_HANDLERS,  # backend_handlers.py: the GPU pool (h8)
    **WEBHOOK_HANDLERS,  # rcc/webhooks/commands.py: outbound webhook endpoints (h7)
    **AUTOTOPUP_HANDLERS,  # rcc/autotopup/commands.py: auto top-up (h7)
    **ORG_HANDLERS,  # org_handlers.py: organisations, members, budgets, their wallets
    **ORG_CUSTOMER_HANDLERS,  # org_customer_commands.py: an org's own Stripe Customer (h14)
    **TEMPLATE_HANDLERS,  # template_handlers.py: publish, new version, unpublish (h4)
    **POOL_HANDLERS,  # pool_handlers.py: the GPU pool (h3): lost prompts, next attempts
    c.RegisterUser: register_user,
    c.SetAdmin: set_admin,
    c.PatchUser: patch_user,  # admin_handlers.py: adjustment and admin flag together
    c.GrantCredits: grant_credits,
    c.AdjustCredits: adjust_credits,
    c.ClawBack: claw_back,
    c.ExpireLot: expire_lot,
    c.CreateJob: create_job,
    c.MarkJob: mark_job,
    c.RecordSignIn: record_sign_in,
    c.RecordPrompt: record_prompt,
    c.RecordExecutionLog: record_execution_log,
}


def fingerprint(cmd: c.Command) -> bytes:
    """What makes two commands 'the same' for an idempotency key: type and every field."""
    body = msgspec.json.encode(cmd, order="sorted")
    return hashlib.sha256(type(cmd).__name__.encode() + b"\0" + body).digest()
