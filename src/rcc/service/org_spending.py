"""Charging an organisation's wallet: membership and budgets, decided under the locks
the reserve already takes.

Locks. A job on `org:<id>` locks the org's head (`org-<id>`) and its wallet's head
(`wallet-<id>`) together, in stream-id order as every writer does. Removing a member
(or the member leaving) locks the same org head. So a removal and a job of that member
are serialised: a job that took the org's lock first was decided while the person was
a member and commits before the removal can; a job that waits for the lock re-reads
the org under it and sees the removal — once a removal has committed, nothing that
member submits can charge. The budget counters are in the org's state, under the same
lock, so 100 members racing for the last credits of the org and of their budgets are
decided one after another, exactly like a wallet's balance. Ending a job locks the job,
the org and the wallet (again in id order: `job-` < `org-` < `wallet-`) to give the
budget back with the release.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from rcc.domain import org as orgs
from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.admission import Admitted
from rcc.domain.errors import DomainError, Forbidden, Invalid, NotFound
from rcc.domain.events import org_stream, user_stream, wallet_stream
from rcc.domain.job import JobState
from rcc.store.unit_of_work import Head, UnitOfWork

ORG_PREFIX = "org:"
USER_PREFIX = "user:"


class OrgCharge(msgspec.Struct, frozen=True, kw_only=True):
    """What a job on an org's wallet is decided against, both heads locked."""

    user: users.UserState
    org: orgs.OrgState
    org_version: int
    wallet: wallets.WalletState
    wallet_version: int


def org_of(ref: str | None, user_id: str) -> str | DomainError | None:
    """The org a wallet reference names: `org:<id>`; None for the caller's own wallet
    (no reference, or `user:<own id>`). Someone else's wallet is refused."""
    if ref is None or ref == f"{USER_PREFIX}{user_id}":
        return None
    if ref.startswith(ORG_PREFIX) and len(ref) > len(ORG_PREFIX):
        return ref.removeprefix(ORG_PREFIX)
    if ref.startswith(USER_PREFIX):
        return Forbidden(detail="jobs charge your own wallet or an organisation's")
    return Invalid(detail="wallet must be org:<id> or user:<your id>")


async def lock_org_wallet(uow: UnitOfWork, user_id: str, org_id: str) -> OrgCharge | DomainError:
    """The member, the org and its wallet with both heads locked; refused for anyone
    who is not a member when the lock is held."""
    user = (await uow.peek(user_stream(user_id))).as_state(users.UserState)
    if not user.registered:
        return NotFound(detail="user not found")
    org_head, wallet_head = await _lock_pair(uow, org_id)
    org = org_head.as_state(orgs.OrgState)
    if refused := orgs.may_charge(org, user_id):
        return refused
    return OrgCharge(
        user=user,
        org=org,
        org_version=org_head.version,
        wallet=wallet_head.as_state(wallets.WalletState),
        wallet_version=wallet_head.version,
    )


async def _lock_pair(uow: UnitOfWork, org_id: str) -> tuple[Head, Head]:
    heads = await uow.lock(org_stream(org_id), wallet_stream(org_id))
    return heads[org_stream(org_id)], heads[wallet_stream(org_id)]


def charge_budget(
    uow: UnitOfWork, charge: OrgCharge, admitted: Admitted, now: datetime
) -> Admitted | DomainError:
    """Count the admitted job against the budgets (staging the counters) or refuse it;
    the job remembers the month it was charged in, for its release."""
    created = admitted.created
    amount = 0 if created.bypass else created.cost_rcc
    events = orgs.charge(charge.org, charge.user.user_id, created.job_id, amount, now)
    if isinstance(events, DomainError):
        return events
    if events:
        stream = org_stream(charge.org.org_id)
        uow.stage(stream, charge.org_version, events, orgs.fold(events, charge.org))
    dated = msgspec.structs.replace(created, budget_month=orgs.month_of(now) if events else "")
    return msgspec.structs.replace(admitted, created=dated)


def org_stream_of(job: JobState) -> str:
    """The org head a job's end must lock with its wallet (absent for a user's wallet:
    locking a stream that does not exist locks nothing)."""
    return org_stream(job.wallet_id)


def give_budget_back(uow: UnitOfWork, org_head: Head, job: JobState, released: int) -> None:
    """Stage the budget return of a released org job (nothing for other jobs)."""
    if not job.budget_month or not released or org_head.version == 0:
        return
    org = org_head.as_state(orgs.OrgState)
    events = orgs.give_back(org, job.user_id, job.job_id, released, job.budget_month)
    if events:
        uow.stage(org_stream(org.org_id), org_head.version, events, orgs.fold(events, org))
