"""The job aggregate: its lifecycle and which transitions are legal."""

from __future__ import annotations

import msgspec

from rcc.domain.errors import IllegalTransition, Invalid
from rcc.domain.events import (
    Event,
    JobCancelled,
    JobCreated,
    JobFailed,
    JobPromptLost,
    JobPromptSubmitted,
    JobQueued,
    JobStarted,
    JobSucceeded,
)
from rcc.domain.metered import OutputUsage, PriceRule, charge_for_outputs

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

# From each status, the statuses a job may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    "": frozenset({"created"}),
    "created": frozenset({"queued", "running", "failed", "cancelled"}),
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str = ""
    user_id: str = ""
    wallet_id: str = ""
    job_type: str = ""
    cost_rcc: int = 0
    bypass: bool = False
    status: str = ""
    backend: str = ""  # the ComfyUI backend and prompt id the adapter recorded, if any
    prompt_id: str = ""
    draws: list[tuple[str, int]] = []  # what the reserve drew: a release returns exactly this
    charged_rcc: int = 0  # what its hold captured when it succeeded
    budget_month: str = ""  # h5: an org job's budget month, given back to on release
    # A template's price rule and the inputs it ran with: success reprices them by what
    # the outputs show (rcc.domain.metered), capturing at most the hold.
    price_rule: dict[str, object] = {}
    template_inputs: dict[str, object] = {}
    attempt: int = 1  # the ComfyUI submission attempt (a lost prompt starts the next one)


def evolve(state: JobState, event: Event) -> JobState:
    """Fold one event into the job state."""
    match event:
        case JobCreated():
            return JobState(
                job_id=event.job_id,
                user_id=event.user_id,
                wallet_id=event.wallet_id,
                job_type=event.job_type,
                cost_rcc=event.cost_rcc,
                bypass=event.bypass,
                status="created",
                draws=[(lot, n) for lot, n in event.draws],
                budget_month=event.budget_month,
                price_rule=event.price_rule,
                template_inputs=event.template_inputs,
            )
        case JobQueued():
            return msgspec.structs.replace(state, status="queued")
        case JobPromptSubmitted():
            return msgspec.structs.replace(state, backend=event.backend, prompt_id=event.prompt_id)
        case JobPromptLost():
            return msgspec.structs.replace(state, backend="", prompt_id="", attempt=event.attempt)
        case JobStarted():
            return msgspec.structs.replace(state, status="running")
        case JobSucceeded():
            charged = held(state) if event.charged_rcc is None else event.charged_rcc
            return msgspec.structs.replace(state, status="succeeded", charged_rcc=charged)
        case JobFailed():
            return msgspec.structs.replace(state, status="failed")
        case JobCancelled():
            return msgspec.structs.replace(state, status="cancelled")
    return state


def check_transition(state: JobState, target: str) -> IllegalTransition | None:
    """Refuse a move the lifecycle does not allow (for example anything after success)."""
    if target not in TRANSITIONS.get(state.status, frozenset()):
        shown = state.status or "absent"
        return IllegalTransition(
            detail=f"a {shown} job cannot become {target}",
            status=shown,
            requested=target,
        )
    return None


def held(state: JobState) -> int:
    """What the job's hold set aside: its price, or 0 for an admin's bypass."""
    return 0 if state.bypass else state.cost_rcc


def captured(
    state: JobState, target: str, charged: int | None, usage: OutputUsage | None = None
) -> int | Invalid:
    """What moving to `target` captures of the hold: on success `charged` (≤ the hold),
    else what the job's metered price rule gives for the `usage` its outputs show, else
    all of it; nothing on any other move."""
    if target != "succeeded":
        if charged is not None:
            return Invalid(detail="charged_rcc goes only with success")
        return 0
    if charged is None and usage is not None and state.price_rule and not state.bypass:
        rule = msgspec.convert(state.price_rule, PriceRule)
        return charge_for_outputs(rule, dict(state.template_inputs), usage, held(state))
    if charged is None:
        return held(state)
    if not 0 <= charged <= held(state):
        return Invalid(detail=f"charged_rcc must be between 0 and the {held(state)} RCC held")
    return charged
