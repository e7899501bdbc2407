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
    day: str = ""  # the UTC day (YYYY-MM-DD) it counts against the daily limit (h6)

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
    day: str = ""  # the UTC day of the release: gives that day's allowance back (h6)
    # > 0: this release settles a capture of `captured` RCC (the job's success charged
    # less than it held); `amount` is the rest of the hold, returned.
    captured: int = 0

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
    budget_month: str = ""  # h5: the UTC month (YYYY-MM) an org budget was charged in
    template: str = ""  # h4: the template it was built from ("" for a raw workflow)
    template_version: int = 0
    template_inputs: dict[str, object] = {}  # h4: the values bound (a capture reprices them)
    price_rule: dict[str, object] = {}  # the template's rule: success captures what it gives
    required_tags: tuple[str, ...] = ()  # h15: backend tags its template requires
    queue_priority: int = 0  # h16: its plan's `queue.priority` (rcc/queue_order.py)


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
    charged_rcc: int | None = None  # what its hold captured (None: before holds, the price)


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


# --- policies, plans and blocking (h6) ----------------------------------------------
# Policy changes live in the one `policies` stream, so every change is serialised and
# its `before` is exact; blocking lives in the account's own stream (`user-<id>`).

PolicyValue = int | list[int] | None  # None: no limit (only for keys that allow it)


class PolicySet(Event, frozen=True, kw_only=True, tag="policy_set"):
    """An admin set a policy key for a scope from `effective_at` on (docs/POLICIES.md)."""

    key: str
    scope: str  # "global", "plan", "org" or "user"
    scope_id: str = ""  # the plan, org or user id; empty for global
    value: PolicyValue = None
    effective_at: datetime
    reason: str
    actor: str
    before: PolicyValue = None  # what this scope resolved to when the change was made
    after: PolicyValue = None


class AccountBlockChanged(Event, frozen=True, kw_only=True, tag="account_block_changed"):
    """An admin blocked or unblocked an account (a user; an org at merge) with a reason."""

    account_id: str
    blocked: bool
    reason: str
    actor: str
    account_kind: str = "user"


# --- subscription months (h2) ------------------------------------------------------


class SubscriptionLotSuperseded(
    CreditsExpired, frozen=True, kw_only=True, tag="subscription_lot_superseded"
):
    """CREDITS_EXPIRED for a subscription month's lot at the instant the next month's
    credits are granted (in that grant's transaction), before its backstop expiry."""

    by: str  # the next month's lot
    rolled_over: str | None = None  # the lot that carries part of it one more month


class CreditsRolledOver(GrantEvent, frozen=True, kw_only=True, tag="credits_rolled_over"):
    """Up to RCC_SUBSCRIPTION_ROLLOVER_RCC of a superseded month, as a lot lasting one
    more month; a ledger line of the month's grant."""

    reason: ClassVar[str] = "SUBSCRIPTION_GRANT"
    from_lots: tuple[str, ...] = ()  # the superseded lots it carries part of


# --- holds and service usage (h1) ---------------------------------------------------
# A service hold lives in its own stream `hold-<id>` (its lifecycle) and moves credits
# on its wallet's stream (ledger lines HOLD, HOLD_RELEASE, USAGE). See docs/HOLDS.md.


class CreditsHeld(LedgerEvent, frozen=True, kw_only=True, tag="credits_held"):
    """HOLD: a service set credits aside, drawn from lots in the spending order."""

    reason: ClassVar[str] = "HOLD"
    hold: str
    amount: int
    draws: Draws = ()
    service: str = ""  # the token's name: who asked
    note: str = ""  # the service's reason

    @property
    def delta(self) -> int:
        return -self.amount


class HoldReleased(LedgerEvent, frozen=True, kw_only=True, tag="hold_released"):
    """HOLD_RELEASE: a hold's credits coming back, to the lots they were drawn from (or
    as a new lot when that lot has expired). `captured` > 0: it settles a capture of
    that much and `amount` is the rest; 0: a void (by the service or the timeout)."""

    reason: ClassVar[str] = "HOLD_RELEASE"
    hold: str
    amount: int
    held: int  # the whole hold (what leaves the wallet's `held`)
    captured: int = 0
    draws: Draws = ()
    drawn: Draws = ()  # what the hold drew (no longer pinned by it)
    relot: str | None = None
    relot_expires_at: datetime | None = None
    at: datetime | None = None
    service: str = ""
    timeout: bool = False  # voided by the scheduler at its timeout

    @property
    def delta(self) -> int:
        return self.amount


class HoldSettled(Event, frozen=True, kw_only=True, tag="hold_settled"):
    """A hold captured in full: nothing comes back. Not a ledger line (its HOLD row
    already took the credits); it only closes the hold on the wallet."""

    hold: str
    held: int
    drawn: Draws = ()


class CreditsUsed(LedgerEvent, frozen=True, kw_only=True, tag="credits_used"):
    """USAGE: a service's one-shot charge, drawn from lots in the spending order."""

    reason: ClassVar[str] = "USAGE"
    amount: int
    draws: Draws = ()
    service: str = ""
    note: str = ""

    @property
    def delta(self) -> int:
        return -self.amount


class HoldAuthorized(Event, frozen=True, kw_only=True, tag="hold_authorized"):
    """A hold began (its own stream): what it holds, for whom and until when."""

    hold_id: str
    wallet_id: str
    amount: int
    draws: Draws = ()
    service: str = ""
    note: str = ""
    expires_at: datetime
    owner_kind: str = "user"  # the wallet's owner: `user` or `org`


class HoldCaptured(Event, frozen=True, kw_only=True, tag="hold_captured"):
    """A hold ended by a capture of `amount` (≤ what it held)."""

    hold_id: str
    amount: int


class HoldVoided(Event, frozen=True, kw_only=True, tag="hold_voided"):
    """A hold ended with nothing captured: voided by its service or by its timeout."""

    hold_id: str
    timeout: bool = False


def hold_stream(hold_id: str) -> str:
    """The stream of one service hold."""
    return f"hold-{hold_id}"


# --- the GPU pool (h8): the `backend-pool` stream, one for every backend -------------
# Admin changes are rare and small; one stream keeps their order and lets a handler
# decide on the whole pool (a URL is in it at most once). `actor` says who did it.


class BackendAdded(Event, frozen=True, kw_only=True, tag="backend_added"):
    backend_id: str
    url: str
    slots: int
    tags: tuple[str, ...] = ()
    actor: str = ""


class BackendChanged(Event, frozen=True, kw_only=True, tag="backend_changed"):
    """Slots and tags as they are now (both, whichever changed)."""

    backend_id: str
    slots: int
    tags: tuple[str, ...] = ()
    actor: str = ""


class BackendDrained(Event, frozen=True, kw_only=True, tag="backend_drained"):
    """Draining on (finish the work it has, get no more) or off again."""

    backend_id: str
    draining: bool = True
    actor: str = ""


class BackendRemoved(Event, frozen=True, kw_only=True, tag="backend_removed"):
    backend_id: str
    url: str
    actor: str = ""


# --- billing states and outbound webhooks (h7) ---------------------------------------


class BillingStateChanged(Event, frozen=True, kw_only=True, tag="billing_state_changed"):
    """A wallet moved between healthy, low_balance and depleted (stream `billing-<wallet>`).

    Written by the billing follower once per change, in the batch that moves its
    checkpoint past `at_position`, the ledger event that caused the change."""

    wallet_id: str
    previous: str
    state: str
    balance: int
    threshold: int
    at_position: int


class WebhookEndpointRegistered(
    Event, frozen=True, kw_only=True, tag="webhook_endpoint_registered"
):
    """An admin registered an outbound webhook endpoint (its secret is not in the log)."""

    endpoint_id: str
    url: str
    events: tuple[str, ...]
    actor: str = ""


class WebhookEndpointDeleted(Event, frozen=True, kw_only=True, tag="webhook_endpoint_deleted"):
    endpoint_id: str
    actor: str = ""


class WebhookRedeliveryRequested(
    Event, frozen=True, kw_only=True, tag="webhook_redelivery_requested"
):
    """An admin asked for a delivery to be sent again (same `webhook-id`)."""

    endpoint_id: str
    delivery_id: int
    message_id: str
    actor: str = ""


class AutoTopupConfigured(Event, frozen=True, kw_only=True, tag="auto_topup_configured"):
    """A user turned auto top-up on or off, with a threshold and a pack."""

    user_id: str
    enabled: bool
    threshold_rcc: int
    pack: str
    owner_kind: str = "user"  # h14: "org": `user_id` is the org's id, `actor` its admin
    actor: str = ""


class AutoTopupCardSaved(Event, frozen=True, kw_only=True, tag="auto_topup_card_saved"):
    """A Checkout saved the user's card for off-session payments (Stripe's ids)."""

    user_id: str
    customer_id: str
    payment_method: str


class AutoTopupTriggered(Event, frozen=True, kw_only=True, tag="auto_topup_triggered"):
    """A debit took the balance below the user's threshold: one charge for this crossing."""

    user_id: str
    crossing: str  # `<wallet>:<position>` of the debit
    pack: str
    threshold_rcc: int
    balance: int


class AutoTopupCharged(Event, frozen=True, kw_only=True, tag="auto_topup_charged"):
    """Stripe took the crossing's off-session PaymentIntent (credited by its webhook)."""

    user_id: str
    crossing: str
    payment_intent: str


class AutoTopupDeclined(Event, frozen=True, kw_only=True, tag="auto_topup_declined"):
    user_id: str
    crossing: str
    reason: str
    in_a_row: int
    disabled: bool = False  # the third decline in a row turns auto top-up off
    payment_intent: str = ""  # h14: the declined PaymentIntent (counted once each)


# --- organisations (h5): `org-<id>` streams; the org's wallet is `wallet-<org id>` ---------
# Every change names its actor (the acting user's id). Members are keyed by user id.


class OrgCreated(Event, frozen=True, kw_only=True, tag="org_created"):
    org_id: str
    name: str
    owner_user_id: str
    owner_email: str
    wallet_id: str
    actor: str


class OrgMemberInvited(Event, frozen=True, kw_only=True, tag="org_member_invited"):
    """An invitation by email: only the token's sha256 is kept, never the token."""

    org_id: str
    invitation_id: str
    email: str
    role: str
    token_hash: str
    expires_at: datetime
    actor: str


class OrgInvitationAccepted(Event, frozen=True, kw_only=True, tag="org_invitation_accepted"):
    org_id: str
    invitation_id: str
    user_id: str
    email: str
    role: str
    actor: str


class OrgInvitationExpired(Event, frozen=True, kw_only=True, tag="org_invitation_expired"):
    """Someone used an invitation after its expiry: it can never be accepted now."""

    org_id: str
    invitation_id: str
    actor: str


class OrgRoleChanged(Event, frozen=True, kw_only=True, tag="org_role_changed"):
    org_id: str
    user_id: str
    role: str
    actor: str


class OrgMemberBudgetSet(Event, frozen=True, kw_only=True, tag="org_member_budget_set"):
    org_id: str
    user_id: str
    monthly_budget_rcc: int | None  # None: no budget of its own
    actor: str


class OrgBudgetSet(Event, frozen=True, kw_only=True, tag="org_budget_set"):
    org_id: str
    monthly_budget_rcc: int | None  # the whole org's spending per calendar month (UTC)
    actor: str


class OrgMemberRemoved(Event, frozen=True, kw_only=True, tag="org_member_removed"):
    org_id: str
    user_id: str
    actor: str


class OrgMemberLeft(Event, frozen=True, kw_only=True, tag="org_member_left"):
    org_id: str
    user_id: str
    actor: str


class OrgOwnershipTransferred(Event, frozen=True, kw_only=True, tag="org_ownership_transferred"):
    """The new owner was a member; the previous owner stays on as an admin."""

    org_id: str
    from_user_id: str
    to_user_id: str
    actor: str


class OrgSpendCharged(Event, frozen=True, kw_only=True, tag="org_spend_charged"):
    """A member's job reserved `amount` from the org's wallet in `month` (YYYY-MM, UTC):
    the budget counters, written with the reserve under the org's lock."""

    org_id: str
    user_id: str
    job_id: str
    amount: int
    month: str


class OrgSpendReturned(Event, frozen=True, kw_only=True, tag="org_spend_returned"):
    """A released job gives its budget back to the month it was charged in."""

    org_id: str
    user_id: str
    job_id: str
    amount: int
    month: str


# --- templates and uploads (h4): `template-<id>`, `upload-<id>` -----------------------


class TemplatePublished(Event, frozen=True, kw_only=True, tag="template_published"):
    """An admin published a new template (version 1). `spec` is the whole TemplateSpec
    as JSON (name, description, job_type, workflow, inputs, price, cover)."""

    template_id: str
    version: int
    spec: dict[str, Any]
    actor: str


class TemplateRevised(Event, frozen=True, kw_only=True, tag="template_revised"):
    """An admin published a new version; jobs keep the version they ran."""

    template_id: str
    version: int
    spec: dict[str, Any]
    actor: str


class TemplateUnpublished(Event, frozen=True, kw_only=True, tag="template_unpublished"):
    """No new jobs from this template; its past jobs and versions stay readable."""

    template_id: str
    actor: str


class UploadStored(Event, frozen=True, kw_only=True, tag="upload_stored"):
    """A user's file, checked by content, kept until `expires_at` (then deleted)."""

    upload_id: str
    user_id: str
    kind: str  # image | video
    content_type: str
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    expires_at: datetime


def template_stream(template_id: str) -> str:
    return f"template-{template_id}"


def upload_stream(upload_id: str) -> str:
    return f"upload-{upload_id}"


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


# --- organisations' Stripe customers (h14): on the `org-<id>` stream


class OrgStripeCustomerSet(Event, frozen=True, kw_only=True, tag="org_stripe_customer_set"):
    """The Stripe Customer the organisation pays as, created on its first purchase."""

    org_id: str
    customer_id: str
    actor: str = ""  # the buyer whose purchase created it


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
    # --- policies, plans and blocking (h6)
    | PolicySet
    | AccountBlockChanged
    # --- subscription months (h2)
    | SubscriptionLotSuperseded
    | CreditsRolledOver
    # holds and service usage (h1)
    | CreditsHeld
    | HoldReleased
    | HoldSettled
    | CreditsUsed
    | HoldAuthorized
    | HoldCaptured
    | HoldVoided
    # the GPU pool (h8)
    | BackendAdded
    | BackendChanged
    | BackendDrained
    | BackendRemoved
    # billing states and outbound webhooks (h7)
    | BillingStateChanged
    | WebhookEndpointRegistered
    | WebhookEndpointDeleted
    | WebhookRedeliveryRequested
    | AutoTopupConfigured
    | AutoTopupCardSaved
    | AutoTopupTriggered
    | AutoTopupCharged
    | AutoTopupDeclined
    # organisations (h5)
    | OrgCreated
    | OrgMemberInvited
    | OrgInvitationAccepted
    | OrgInvitationExpired
    | OrgRoleChanged
    | OrgMemberBudgetSet
    | OrgBudgetSet
    | OrgMemberRemoved
    | OrgMemberLeft
    | OrgOwnershipTransferred
    | OrgSpendCharged
    | OrgSpendReturned
    # templates and uploads (h4)
    | TemplatePublished
    | TemplateRevised
    | TemplateUnpublished
    | UploadStored
    # --- GPU pool (h3)
    | JobPromptLost
    # --- organisations' Stripe customers (h14)
    | OrgStripeCustomerSet
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
POLICIES_STREAM = "policies"  # every PolicySet (h6)


def model_stream(name: str) -> str:
    return f"model-{name}"


BACKEND_POOL_STREAM = "backend-pool"  # the GPU pool (h8)


def billing_stream(wallet_id: str) -> str:
    return f"billing-{wallet_id}"


def webhook_stream(endpoint_id: str) -> str:
    return f"webhook-{endpoint_id}"


def autotopup_stream(user_id: str) -> str:
    return f"autotopup-{user_id}"


def org_stream(org_id: str) -> str:
    return f"org-{org_id}"
