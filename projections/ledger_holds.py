"""What the ledger says about holds and service usage (h1): which service, why, and
what a release settles. Used by projections/ledger.py."""

from __future__ import annotations

from rcc.domain.events import (
    CreditsHeld,
    CreditsReleased,
    CreditsUsed,
    HoldReleased,
    LedgerEvent,
)


def service_of(event: LedgerEvent) -> str | None:
    """The service that wrote a HOLD, HOLD_RELEASE or USAGE line (its token's name)."""
    match event:
        case CreditsHeld() | CreditsUsed() | HoldReleased():
            return event.service or None
    return None


def hold_note(event: LedgerEvent) -> str | None:
    """The line's text: the service's reason, the hold it belongs to, what it settles."""
    match event:
        case CreditsHeld():
            return f"hold {event.hold}: {event.note}"
        case CreditsUsed():
            return event.note
        case HoldReleased():
            return f"hold {event.hold}: {_settles(event.captured, event.timeout)}{_relot(event)}"
        case CreditsReleased() if event.captured:
            return f"settles a capture of {event.captured} RCC{_relot(event)}"
    return None


def _settles(captured: int, timeout: bool) -> str:
    if captured:
        return f"settles a capture of {captured} RCC"
    return "voided at its timeout" if timeout else "voided"


def _relot(event: HoldReleased | CreditsReleased) -> str:
    if event.relot is None or event.relot_expires_at is None:
        return ""
    return (
        f"; returned as new lot {event.relot} until "
        f"{event.relot_expires_at:%Y-%m-%d %H:%M} UTC: the lot it was drawn from expired"
    )
