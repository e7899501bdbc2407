"""Blocked accounts: the one check every spending command makes (jobs, holds,
checkouts; an organisation's at merge). Reading, signing in and running jobs go on."""

from __future__ import annotations

from typing import Protocol

from rcc.domain.errors import AccountBlocked


class Blockable(Protocol):
    @property
    def blocked(self) -> bool: ...

    @property
    def blocked_reason(self) -> str: ...


def account_block(account: Blockable) -> AccountBlocked | None:
    """403 `account_blocked` for an account an admin blocked, with the admin's reason."""
    if not account.blocked:
        return None
    return AccountBlocked(
        detail=f"this account is blocked: {account.blocked_reason}",
        reason=account.blocked_reason,
    )
