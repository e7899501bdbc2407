"""Every event RCC records, as one tagged union with one decoder.

Rules (see STYLE.md): frozen, keyword-only, past tense, an explicit stable tag so a
class rename never changes stored data, and new fields only ever with defaults.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all events; `type` in the stored JSON is the tag."""


# --- wallet streams: `wallet-<id>` -------------------------------------------------


class WalletOpened(Event, frozen=True, kw_only=True, tag="wallet_opened"):
    wallet_id: str
    owner_kind: str  # "user" now; "org" later, so org wallets are additive
    owner_id: str


class LedgerEvent(Event, frozen=True, kw_only=True):
    """A wallet event that is one line of the ledger, with its PRD reason."""

    reason: ClassVar[str]

    @property
    def delta(self) -> int:
        raise NotImplementedError

    @property
    def job_id(self) -> str | None:
        return None

    @property
    def external_ref(self) -> str | None:
        return None


class CreditsReserved(LedgerEvent, frozen=True, kw_only=True, tag="credits_reserved"):
    reason: ClassVar[str] = "JOB_RESERVE"
    job: str
    amount: int

    @property
    def delta(self) -> int:
        return -self.amount

    @property
    def job_id(self) -> str | None:
        return self.job


class CreditsReleased(LedgerEvent, frozen=True, kw_only=True, tag="credits_released"):
    reason: ClassVar[str] = "JOB_RELEASE"
    job: str
    amount: int

    @property
    def delta(self) -> int:
        return self.amount

    @property
    def job_id(self) -> str | None:
        return self.job


class AdminBypassed(LedgerEvent, frozen=True, kw_only=True, tag="admin_bypassed"):
    """An admin ran a job without paying: a zero-delta line that keeps the trail."""

    reason: ClassVar[str] = "ADMIN_BYPASS"
    job: str

    @property
    def delta(self) -> int:
        return 0

    @property
    def job_id(self) -> str | None:
        return self.job


class _Grant(LedgerEvent, frozen=True, kw_only=True):
    amount: int
    ref: str | None = None

    @property
    def delta(self) -> int:
        return self.amount

    @property
    def external_ref(self) -> str | None:
        return self.ref


class SubscriptionGranted(_Grant, frozen=True, kw_only=True, tag="subscription_granted"):
    reason: ClassVar[str] = "SUBSCRIPTION_GRANT"
    period: str | None = None


class TopupGranted(_Grant, frozen=True, kw_only=True, tag="topup_granted"):
    reason: ClassVar[str] = "TOPUP_GRANT"
    pack: str | None = None


class SignupGranted(_Grant, frozen=True, kw_only=True, tag="signup_granted"):
    reason: ClassVar[str] = "SIGNUP_GRANT"


class CreditsAdjusted(LedgerEvent, frozen=True, kw_only=True, tag="credits_adjusted"):
    """MANUAL_ADJUST: signed, always with the acting admin and a reason text."""

    reason: ClassVar[str] = "MANUAL_ADJUST"
    amount: int
    actor: str
    note: str

    @property
    def delta(self) -> int:
        return self.amount


class CreditsClawedBack(LedgerEvent, frozen=True, kw_only=True, tag="credits_clawed_back"):
    """REFUND_CLAWBACK: takes back at most the balance; the rest is the shortfall."""

    reason: ClassVar[str] = "REFUND_CLAWBACK"
    amount: int
    shortfall: int = 0
    ref: str | None = None

    @property
    def delta(self) -> int:
        return -self.amount

    @property
    def external_ref(self) -> str | None:
        return self.ref


class JobSettled(Event, frozen=True, kw_only=True, tag="job_settled"):
    """A job of this wallet succeeded: it no longer counts as open. Not a ledger line."""

    job: str


# --- user streams: `user-<id>` -----------------------------------------------------


class UserRegistered(Event, frozen=True, kw_only=True, tag="user_registered"):
    user_id: str
    email: str
    wallet_id: str
    is_admin: bool = False


class AdminStatusChanged(Event, frozen=True, kw_only=True, tag="admin_status_changed"):
    user_id: str
    is_admin: bool
    actor: str


# --- job streams: `job-<id>` -------------------------------------------------------


class JobCreated(Event, frozen=True, kw_only=True, tag="job_created"):
    job_id: str
    user_id: str
    wallet_id: str
    job_type: str
    cost_rcc: int
    bypass: bool = False  # an admin's job: nothing reserved, nothing to release
    workflow: dict[str, object] = {}
    metadata: dict[str, object] = {}


class JobQueued(Event, frozen=True, kw_only=True, tag="job_queued"):
    job_id: str


class JobStarted(Event, frozen=True, kw_only=True, tag="job_started"):
    job_id: str
    backend: str | None = None
    prompt_id: str | None = None


class JobSucceeded(Event, frozen=True, kw_only=True, tag="job_succeeded"):
    job_id: str
    output_uris: list[str] = []
    duration_ms: int | None = None


class JobFailed(Event, frozen=True, kw_only=True, tag="job_failed"):
    job_id: str
    error: str


class JobCancelled(Event, frozen=True, kw_only=True, tag="job_cancelled"):
    job_id: str
    actor: str | None = None


# --- sign-in attempts: `signin-<id>`, one stream each (no hot stream to contend on) ----


class SignInAttempted(Event, frozen=True, kw_only=True, tag="sign_in_attempted"):
    """Every sign-in attempt, admitted or not, for the operations log."""

    method: str  # "password" or "gitlab"
    email: str
    outcome: str  # "admitted", "refused" or "failed"
    reason: str = ""
    user_id: str | None = None
    ip: str | None = None


AnyEvent = (
    WalletOpened
    | CreditsReserved
    | CreditsReleased
    | AdminBypassed
    | SubscriptionGranted
    | TopupGranted
    | SignupGranted
    | CreditsAdjusted
    | CreditsClawedBack
    | JobSettled
    | UserRegistered
    | AdminStatusChanged
    | JobCreated
    | JobQueued
    | JobStarted
    | JobSucceeded
    | JobFailed
    | JobCancelled
    | SignInAttempted
)

_encoder = msgspec.json.Encoder()


def encode_data(event: Event) -> tuple[str, bytes]:
    """The stored (type, JSON data) of an event; data holds the fields without the tag."""
    raw = msgspec.to_builtins(event)
    type_ = raw.pop("type")
    return type_, _encoder.encode(raw)


def decode_event(type_: str, data: bytes | str | dict[str, object]) -> AnyEvent:
    """Rebuild an event from its stored type and data (the tag is added back).

    Stored events are decoded leniently: fields a newer writer added are ignored.
    """
    fields = msgspec.json.decode(data) if isinstance(data, (bytes, str)) else data
    event: AnyEvent = msgspec.convert({**fields, "type": type_}, AnyEvent)
    return event


def event_type(event: Event) -> str:
    """The stable stored tag of an event."""
    return str(type(event).__struct_config__.tag)


def wallet_stream(wallet_id: str) -> str:
    return f"wallet-{wallet_id}"


def user_stream(user_id: str) -> str:
    return f"user-{user_id}"


def job_stream(job_id: str) -> str:
    return f"job-{job_id}"
