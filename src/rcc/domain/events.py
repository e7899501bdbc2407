"""Every event RCC records, as one tagged union with one decoder.

Rules (see STYLE.md): frozen, keyword-only, past tense, an explicit stable tag so a
class rename never changes stored data, and new fields only ever with defaults.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all events; `type` in the stored JSON is the tag."""


# --- wallet streams: `wallet-<id>` -------------------------------------------------


class WalletOpened(Event, frozen=True, kw_only=True, tag="wallet_opened"):
    wallet_id: str
    owner_kind: str  # "user" now; "org" later, so org wallets are additive
    owner_id: str
    lots: bool = False  # True: every credit of this wallet lives in a lot from the start


class LotsOpened(Event, frozen=True, kw_only=True, tag="lots_opened"):
    """A wallet from before lots moves its whole balance into one lot without expiry.

    Not a ledger line (the balance does not change): it is written once, before the
    first lot-aware event of a wallet opened without lots, so replays stay exact."""

    lot: str
    amount: int
    at: datetime


Draws = tuple[tuple[str, int], ...]  # (lot id, amount) per lot a debit drew from


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
    draws: Draws = ()  # empty only before lots

    @property
    def delta(self) -> int:
        return -self.amount

    @property
    def job_id(self) -> str | None:
        return self.job


class CreditsReleased(LedgerEvent, frozen=True, kw_only=True, tag="credits_released"):
    """JOB_RELEASE: returns exactly the reserve's draws to their lots; what was drawn
    from a lot that has expired since comes back as a new lot (`relot`) instead."""

    reason: ClassVar[str] = "JOB_RELEASE"
    job: str
    amount: int
    draws: Draws = ()  # returned to the lots they came from
    drawn: Draws = ()  # what the reserve drew (these lots are no longer pinned by the job)
    relot: str | None = None  # the new lot for the rest (amount - the draws above)
    relot_expires_at: datetime | None = None
    at: datetime | None = None

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


class GrantEvent(LedgerEvent, frozen=True, kw_only=True):
    amount: int
    ref: str | None = None
    lot: str | None = None  # the lot it creates (None only before lots)
    priority: int = 50
    expires_at: datetime | None = None
    at: datetime | None = None  # when the lot takes effect

    @property
    def delta(self) -> int:
        return self.amount

    @property
    def external_ref(self) -> str | None:
        return self.ref


class SubscriptionGranted(GrantEvent, frozen=True, kw_only=True, tag="subscription_granted"):
    reason: ClassVar[str] = "SUBSCRIPTION_GRANT"
    period: str | None = None


class TopupGranted(GrantEvent, frozen=True, kw_only=True, tag="topup_granted"):
    reason: ClassVar[str] = "TOPUP_GRANT"
    pack: str | None = None


class SignupGranted(GrantEvent, frozen=True, kw_only=True, tag="signup_granted"):
    reason: ClassVar[str] = "SIGNUP_GRANT"


class CreditsAdjusted(LedgerEvent, frozen=True, kw_only=True, tag="credits_adjusted"):
    """MANUAL_ADJUST: signed, always with the acting admin and a reason text."""

    reason: ClassVar[str] = "MANUAL_ADJUST"
    amount: int
    actor: str
    note: str
    lot: str | None = None  # a positive adjustment's lot (None only before lots)
    priority: int = 50
    expires_at: datetime | None = None
    at: datetime | None = None
    draws: Draws = ()  # a negative adjustment's draws

    @property
    def delta(self) -> int:
        return self.amount


class CreditsClawedBack(LedgerEvent, frozen=True, kw_only=True, tag="credits_clawed_back"):
    """REFUND_CLAWBACK: takes back at most the balance; the rest is the shortfall."""

    reason: ClassVar[str] = "REFUND_CLAWBACK"
    amount: int
    shortfall: int = 0
    ref: str | None = None
    draws: Draws = ()  # the payment's own lot first, then by the spending order

    @property
    def delta(self) -> int:
        return -self.amount

    @property
    def external_ref(self) -> str | None:
        return self.ref


class CreditsExpired(LedgerEvent, frozen=True, kw_only=True, tag="credits_expired"):
    """CREDITS_EXPIRED: what was left of a lot at its expiry (never what was drawn)."""

    reason: ClassVar[str] = "CREDITS_EXPIRED"
    lot: str
    amount: int
    expires_at: datetime | None = None

    @property
    def delta(self) -> int:
        return -self.amount


class JobSettled(Event, frozen=True, kw_only=True, tag="job_settled"):
    """A job of this wallet succeeded: it no longer counts as open. Not a ledger line."""

    job: str
    draws: Draws = ()  # what its reserve drew (these lots are no longer pinned by the job)


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
    # Events written before workflows were stored once embed the workflow here; newer
    # ones leave it empty and name the body in `workflow_blobs` by its sha256 (hex).
    workflow: dict[str, object] = {}
    metadata: dict[str, object] = {}
    workflow_digest: str = ""
    draws: Draws = ()  # what its reserve drew from which lots: a release returns it


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


class JobPromptSubmitted(Event, frozen=True, kw_only=True, tag="job_prompt_submitted"):
    """The adapter hands the job to a ComfyUI backend under this prompt id.

    Recorded before POST /prompt: after a restart the adapter asks that backend about
    this id (its /queue and /history) instead of submitting the job a second time."""

    job_id: str
    backend: str
    prompt_id: str
    client_id: str


class ExecutionLogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a job's execution log: what ComfyUI reported, or what the adapter did."""

    at: datetime
    kind: str  # e.g. execution_start, executing, progress, execution_error, timeout
    message: str
    node: str | None = None
    source: str = "comfyui"  # "comfyui" (reported by ComfyUI) or "adapter"


class JobExecutionLogged(Event, frozen=True, kw_only=True, tag="job_execution_logged"):
    """Lines of the execution log of a job's ComfyUI run (progress, errors, timing)."""

    job_id: str
    prompt_id: str | None = None
    lines: list[ExecutionLogLine] = []


# --- sign-in attempts: `signin-<id>`, one stream each (no hot stream to contend on) ----


class SignInAttempted(Event, frozen=True, kw_only=True, tag="sign_in_attempted"):
    """Every sign-in attempt, admitted or not, for the operations log."""

    method: str  # "password" or "gitlab"
    email: str
    outcome: str  # "admitted", "refused" or "failed"
    reason: str = ""
    user_id: str | None = None
    ip: str | None = None


# --- payments (issue 5): `payment-<key>`, `subscription-<id>`, `stripe-<event id>` --------
# A payment's key is the Stripe PaymentIntent id when the event names one, else the id of
# the object that was paid (checkout session or invoice); refunds and disputes name the
# PaymentIntent too, so every fact about one payment lands on one stream.


class StripeEventReceived(Event, frozen=True, kw_only=True, tag="stripe_event_received"):
    """A Stripe event took effect here: recorded once per Stripe event id (the audit)."""

    event_id: str
    event_type: str
    object_id: str = ""
    created: int = 0  # Stripe's timestamp, epoch seconds
    outcome: str = ""  # what it did: granted, pending, held, rejected, failed, ...
    detail: str = ""


class PaymentFact(Event, frozen=True, kw_only=True):
    """What a payment is for and what it cost, as Stripe said and the catalog prices it."""

    payment_key: str
    kind: str = ""  # "topup" or "subscription" ("" when Stripe's event did not say)
    product: str = ""  # the pack or the plan
    interval: str | None = None  # "month" or "year" for plans
    amount: int = 0  # charged, in minor units
    currency: str = ""
    credits: int = 0  # every RCC the payment buys (12 months of a plan for a year)
    credits_per_month: int = 0
    months: int = 0
    period_start: int | None = None  # epoch seconds, the paid period of a plan
    period_end: int | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    wallet_id: str | None = None


class PaymentPending(PaymentFact, frozen=True, kw_only=True, tag="payment_pending"):
    """Checkout completed with a payment method that settles later."""


class PaymentHeld(PaymentFact, frozen=True, kw_only=True, tag="payment_held"):
    """Paid, but no user is known for the subscription yet: credited once it is linked."""


class PaymentSucceeded(PaymentFact, frozen=True, kw_only=True, tag="payment_succeeded"):
    """Paid and matching the catalog: the credits it buys are the user's (now or monthly)."""


class PaymentRejected(PaymentFact, frozen=True, kw_only=True, tag="payment_rejected"):
    """Paid, but refused: unknown product or user, or amount or currency not the catalog's."""

    reason: str


class PaymentFailed(PaymentFact, frozen=True, kw_only=True, tag="payment_failed"):
    """A payment attempt failed (invoice.payment_failed, async payment failed)."""

    reason: str = ""


class SubscriptionMonthGranted(Event, frozen=True, kw_only=True, tag="subscription_month_granted"):
    """Month `month_index` of a paid plan period was credited (with the wallet's grant)."""

    payment_key: str
    month_index: int
    credits: int
    due_at: int  # epoch seconds


class SubscriptionMonthSkipped(Event, frozen=True, kw_only=True, tag="subscription_month_skipped"):
    """A scheduled month was not credited (the subscription ended, or the payment was reversed)."""

    payment_key: str
    month_index: int
    reason: str


class PaymentReversal(Event, frozen=True, kw_only=True):
    payment_key: str
    charge_id: str = ""
    amount: int = 0  # refunded so far (cumulative, as Stripe reports it) or disputed
    currency: str = ""
    reason: str = ""


class PaymentRefunded(PaymentReversal, frozen=True, kw_only=True, tag="payment_refunded"):
    """charge.refunded: `amount` is the charge's cumulative refunded amount."""


class PaymentDisputed(PaymentReversal, frozen=True, kw_only=True, tag="payment_disputed"):
    """charge.dispute.created: `amount` is the disputed amount."""

    dispute_id: str = ""


class PaymentAliased(Event, frozen=True, kw_only=True, tag="payment_aliased"):
    """Stripe's current API pays an invoice through an InvoicePayment: the invoice no
    longer names its PaymentIntent, nor the charge its invoice. `invoice_payment.paid`
    names both, and this event (on the stream `payment-<alias>`) says that refunds and
    disputes naming `alias` (a PaymentIntent or charge id) concern `payment_key`."""

    alias: str
    payment_key: str
    invoice_payment_id: str = ""


class PaymentReclaimed(Event, frozen=True, kw_only=True, tag="payment_reclaimed"):
    """Credits a reversed payment bought were taken back (REFUND_CLAWBACK on the wallet).

    `credits` is what was due back; `clawed` what the balance allowed; `shortfall` the
    rest, already spent. `months_stopped` scheduled months will not be granted."""

    payment_key: str
    credits: int
    clawed: int
    shortfall: int
    months_stopped: int = 0
    user_id: str | None = None


class SubscriptionLinked(Event, frozen=True, kw_only=True, tag="subscription_linked"):
    """A Stripe subscription belongs to this user and plan."""

    subscription_id: str
    user_id: str
    plan: str = ""


class SubscriptionPaymentHeld(Event, frozen=True, kw_only=True, tag="subscription_payment_held"):
    """A paid invoice of this subscription waits for the subscription's user."""

    subscription_id: str
    payment_key: str


class SubscriptionEnded(Event, frozen=True, kw_only=True, tag="subscription_ended"):
    """customer.subscription.deleted: months due after `ended_at` are not granted."""

    subscription_id: str
    ended_at: int  # epoch seconds
    user_id: str | None = None
    months_cancelled: int = 0


# --- ComfyUI container operations: the `ops-comfyui` stream --------------------------


class ComfyuiOperated(Event, frozen=True, kw_only=True, tag="comfyui_operated"):
    """An admin started, stopped or restarted the ComfyUI container, and how it went
    (a failed operation is recorded too). Who and from where: the command metadata."""

    action: str  # "start", "stop" or "restart"
    status: str  # "ok" or "failed"
    detail: str = ""
    container: str = ""
    image: str = ""


# --- model files: `model-<name>` streams, one per file name -------------------------


class ModelInstallRequested(Event, frozen=True, kw_only=True, tag="model_install_requested"):
    name: str
    kind: str
    install_id: str
    source: str  # the URL without credentials, query or fragment
    overwrite: bool = False


class ModelInstalled(Event, frozen=True, kw_only=True, tag="model_installed"):
    name: str
    kind: str
    install_id: str
    size_bytes: int
    sha256: str
    replaced: bool = False  # an installed file of this name was replaced


class ModelInstallFailed(Event, frozen=True, kw_only=True, tag="model_install_failed"):
    name: str
    kind: str
    install_id: str
    error: str


class ModelDeleted(Event, frozen=True, kw_only=True, tag="model_deleted"):
    name: str
    kind: str
    sha256: str = ""
    was_installed: bool = True  # False: only the record of a failed install was removed


# --- GPU pool (h3)


class JobPromptLost(Event, frozen=True, kw_only=True, tag="job_prompt_lost"):
    """The backend no longer knows the job's recorded prompt (neither queued nor in its
    history: ComfyUI restarted, or the prompt never arrived). The prompt is forgotten so
    the job may be submitted again as attempt `attempt` (the next one) under a new id."""

    job_id: str
    backend: str
    prompt_id: str
    attempt: int
    reason: str


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
    | CreditsExpired
    | LotsOpened
    | JobSettled
    | UserRegistered
    | AdminStatusChanged
    | JobCreated
    | JobQueued
    | JobStarted
    | JobSucceeded
    | JobFailed
    | JobCancelled
    | JobPromptSubmitted
    | JobExecutionLogged
    | SignInAttempted
    | StripeEventReceived
    | PaymentPending
    | PaymentHeld
    | PaymentSucceeded
    | PaymentRejected
    | PaymentFailed
    | SubscriptionMonthGranted
    | SubscriptionMonthSkipped
    | PaymentRefunded
    | PaymentDisputed
    | PaymentReclaimed
    | PaymentAliased
    | SubscriptionLinked
    | SubscriptionPaymentHeld
    | SubscriptionEnded
    | ComfyuiOperated
    | ModelInstallRequested
    | ModelInstalled
    | ModelInstallFailed
    | ModelDeleted
    # --- GPU pool (h3)
    | JobPromptLost
)

_encoder = msgspec.json.Encoder()


def encode_data(event: Event) -> tuple[str, bytes]:
    """The stored (type, JSON data) of an event; data holds the fields without the tag."""
    raw = msgspec.to_builtins(event)
    type_ = raw.pop("type")
    return type_, _encoder.encode(raw)


# Every stored tag with its class. Converting straight into the class the tag names is
# some fifty times cheaper than converting into the union, and replays decode millions.
EVENT_CLASSES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls for cls in typing.get_args(AnyEvent)
}


class UnknownEventType(ValueError):
    """A stored tag this version does not know (written by a newer version)."""


# Old events decode forever. When a shape has to change in a way defaults cannot cover,
# the new shape gets a new tag and the old tag an upcaster here: a pure function from
# the stored data of the old tag to (newer tag, its data). Upcasters chain (v1 -> v2 ->
# v3) and run before decoding, so handlers only ever see current classes. None so far.
Upcaster = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
UPCASTERS: dict[str, Upcaster] = {}
_MAX_UPCASTS = 32  # a cycle among upcasters is a bug; fail loudly instead of looping


def upcast(type_: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The stored (type, data) brought to the current shape by the registered upcasters."""
    for _ in range(_MAX_UPCASTS):
        upcaster = UPCASTERS.get(type_)
        if upcaster is None:
            return type_, data
        type_, data = upcaster(data)
    raise ValueError(f"upcasters for {type_!r} loop (more than {_MAX_UPCASTS} steps)")


def decode_event(type_: str, data: bytes | str | dict[str, Any]) -> AnyEvent:
    """Rebuild an event from its stored type and data (upcast first when it is old).

    Stored events are decoded leniently: fields a newer writer added are ignored.
    """
    fields = msgspec.json.decode(data) if isinstance(data, (bytes, str)) else data
    type_, fields = upcast(type_, fields)
    cls = EVENT_CLASSES.get(type_)
    if cls is None:
        raise UnknownEventType(f"unknown event type {type_!r}")
    event: AnyEvent = msgspec.convert(fields, cls)  # type: ignore[assignment]
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


def payment_stream(payment_key: str) -> str:
    return f"payment-{payment_key}"


def subscription_stream(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


OPS_COMFYUI_STREAM = "ops-comfyui"


def model_stream(name: str) -> str:
    return f"model-{name}"
