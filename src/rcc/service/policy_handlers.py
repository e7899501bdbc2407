"""Handlers for policy changes and blocking: each an event with its actor and reason.

Policy changes lock the one `policies` stream head, so two changes are decided one
after the other and `before` is always what the scope resolved to just before."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from rcc.domain import org as orgs
from rcc.domain import user as users
from rcc.domain.errors import DomainError, Invalid, NotFound
from rcc.domain.events import (
    POLICIES_STREAM,
    AccountBlockChanged,
    PolicySet,
    PolicyValue,
    org_stream,
    user_stream,
)
from rcc.policy.book import resolve
from rcc.policy.keys import KEYS, SCOPES, value_problem
from rcc.policy.store import load_book, plans_of
from rcc.service.commands import Command
from rcc.service.policy_commands import SetAccountBlocked, SetPolicy
from rcc.store.unit_of_work import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Awaitable[Any]]

# A client's clock and ours differ a little: "now" sent by a client is taken as now.
PAST_SLACK = timedelta(minutes=1)
MAX_REASON = 500
_SCOPE_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")


class PolicyChanged(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    scope: str
    scope_id: str
    value: PolicyValue
    before: PolicyValue
    effective_at: datetime
    seq: int


class BlockChanged(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    blocked: bool
    reason: str


def _problem(cmd: SetPolicy, now: datetime) -> Invalid | None:
    key = KEYS.get(cmd.key)
    if key is None:
        return Invalid(detail=f"unknown policy key {cmd.key!r}; one of {sorted(KEYS)}")
    if problem := value_problem(key, cmd.value):
        return Invalid(detail=problem)
    if cmd.scope not in SCOPES:
        return Invalid(detail=f"scope must be one of {list(SCOPES)}")
    if (cmd.scope == "global") != (not cmd.scope_id):
        return Invalid(detail="scope_id is required for plan, org and user, and not for global")
    if cmd.scope_id and not _SCOPE_ID.match(cmd.scope_id):
        return Invalid(detail="scope_id is 1 to 100 letters, digits or _.:@-")
    if not cmd.reason.strip() or len(cmd.reason) > MAX_REASON:
        return Invalid(detail=f"a reason (1 to {MAX_REASON} characters) is required")
    if cmd.effective_at is not None and cmd.effective_at.tzinfo is None:
        return Invalid(detail="effective_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    if cmd.effective_at is not None and cmd.effective_at < now - PAST_SLACK:
        return Invalid(detail="effective_at cannot be in the past: history is not rewritten")
    return None


async def set_policy(cmd: SetPolicy, uow: UnitOfWork) -> PolicyChanged | DomainError:
    """Record PolicySet with the scope's value before and after, under the stream lock."""
    now = datetime.now(UTC)
    if problem := _problem(cmd, now):
        return problem
    if cmd.scope == "user" and not (await uow.peek(user_stream(cmd.scope_id))).state:
        return NotFound(detail="user not found")
    head = (await uow.lock(POLICIES_STREAM))[POLICIES_STREAM]
    book = await load_book(uow.conn, head.version)
    effective_at = max(cmd.effective_at or now, now)
    scope = {cmd.scope: cmd.scope_id} if cmd.scope != "global" else {}
    if cmd.scope == "user":  # what the user had, through its plan too
        scope["plan"] = (await plans_of(uow.conn, [cmd.scope_id]))[cmd.scope_id]
    before = resolve(book, cmd.key, at=effective_at, **scope)
    event = PolicySet(
        key=cmd.key, scope=cmd.scope, scope_id=cmd.scope_id, value=cmd.value,
        effective_at=effective_at, reason=cmd.reason.strip(), actor=cmd.actor,
        before=before, after=cmd.value,
    )  # fmt: skip
    uow.stage(POLICIES_STREAM, head.version, [event])
    return PolicyChanged(
        key=cmd.key, scope=cmd.scope, scope_id=cmd.scope_id, value=cmd.value, before=before,
        effective_at=effective_at, seq=head.version + 1,
    )  # fmt: skip


async def set_account_blocked(
    cmd: SetAccountBlocked, uow: UnitOfWork
) -> BlockChanged | DomainError:
    """Block (or unblock) a user or an org; running jobs go on, new spending is refused."""
    if not cmd.reason.strip() or len(cmd.reason) > MAX_REASON:
        return Invalid(detail=f"a reason (1 to {MAX_REASON} characters) is required")
    if cmd.account_kind == "org":
        return await _set_org_blocked(cmd, uow)
    stream = user_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    user = head.as_state(users.UserState)
    if not user.registered:
        return NotFound(detail="user not found")
    if user.blocked != cmd.blocked or (cmd.blocked and user.blocked_reason != cmd.reason):
        event = AccountBlockChanged(
            account_id=cmd.user_id, blocked=cmd.blocked, reason=cmd.reason.strip(),
            actor=cmd.actor,
        )  # fmt: skip
        user = users.evolve(user, event)
        uow.stage(stream, head.version, [event], user)
    return BlockChanged(user_id=cmd.user_id, blocked=user.blocked, reason=cmd.reason.strip())


async def _set_org_blocked(cmd: SetAccountBlocked, uow: UnitOfWork) -> BlockChanged | DomainError:
    """An organisation's block lives in its own stream, where every charge of its
    wallet is checked (rcc.domain.org.may_charge) under the same lock."""
    stream = org_stream(cmd.user_id)
    head = (await uow.lock(stream))[stream]
    org = head.as_state(orgs.OrgState)
    if not org.created:
        return NotFound(detail="no such organisation")
    if org.blocked != cmd.blocked or (cmd.blocked and org.blocked_reason != cmd.reason):
        event = AccountBlockChanged(
            account_id=cmd.user_id, blocked=cmd.blocked, reason=cmd.reason.strip(),
            actor=cmd.actor, account_kind="org",
        )  # fmt: skip
        org = orgs.evolve(org, event)
        uow.stage(stream, head.version, [event], org)
    return BlockChanged(user_id=cmd.user_id, blocked=org.blocked, reason=cmd.reason.strip())


POLICY_HANDLERS: dict[type[Command], Handler] = {
    SetPolicy: set_policy,
    SetAccountBlocked: set_account_blocked,
}
