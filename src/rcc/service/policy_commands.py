"""Commands for policies and blocking (h6): plain data, checked by their handlers."""

from __future__ import annotations

from datetime import datetime

from rcc.domain.events import PolicyValue
from rcc.service.commands import Command


class SetPolicy(Command, frozen=True, kw_only=True):
    """Set `key` for a scope from `effective_at` (None: now) on, with a reason."""

    key: str
    scope: str
    scope_id: str = ""
    value: PolicyValue = None
    effective_at: datetime | None = None
    reason: str
    actor: str


class SetAccountBlocked(Command, frozen=True, kw_only=True):
    """Block or unblock an account, with a reason: a user's, or an organisation's
    (`account_kind="org"`, `user_id` then names the org)."""

    user_id: str
    blocked: bool
    reason: str
    actor: str
    account_kind: str = "user"
