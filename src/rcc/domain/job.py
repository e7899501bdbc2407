"""The job aggregate: its lifecycle and which transitions are legal."""

from __future__ import annotations

import msgspec

from rcc.domain.errors import IllegalTransition
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
            return msgspec.structs.replace(state, status="succeeded")
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


def refund_due(state: JobState) -> int:
    """What failing or cancelling this job gives back: the whole reserve, or 0 for a bypass."""
    return 0 if state.bypass else state.cost_rcc
