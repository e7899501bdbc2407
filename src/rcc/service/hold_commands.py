"""Commands of the service credits API: holds (authorize, capture, void) and usage."""

from __future__ import annotations

from rcc.service.commands import Command


class AuthorizeHold(Command, frozen=True, kw_only=True):
    """Set `amount` aside on a wallet for a service until captured, voided or timed out."""

    wallet_id: str
    amount: int
    timeout_s: int
    reason: str
    service: str  # the token's name, in the ledger
    hold_id: str | None = None  # chosen by the caller for tests; generated otherwise
    wallet_kind: str = "user"  # what the reference said the wallet's owner is


class CaptureHold(Command, frozen=True, kw_only=True):
    """Settle a hold for `amount` (≤ held); the rest comes back in the same transaction."""

    hold_id: str
    amount: int
    service: str


class VoidHold(Command, frozen=True, kw_only=True):
    """Return a whole hold. `service` None: the timeout scheduler (any hold, if due)."""

    hold_id: str
    service: str | None


class RecordUsage(Command, frozen=True, kw_only=True):
    """A one-shot charge by a service (USAGE)."""

    wallet_id: str
    amount: int
    reason: str
    service: str
    wallet_kind: str = "user"  # what the reference said the wallet's owner is
