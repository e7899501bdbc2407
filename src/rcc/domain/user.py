"""The user aggregate: identity, admin flag and the wallet it spends from."""

from __future__ import annotations

import msgspec

from rcc.domain.events import AccountBlockChanged, AdminStatusChanged, Event, UserRegistered


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str = ""
    email: str = ""
    wallet_id: str = ""
    is_admin: bool = False
    registered: bool = False
    blocked: bool = False  # by an admin: may sign in and read, not spend (h6)
    blocked_reason: str = ""


def evolve(state: UserState, event: Event) -> UserState:
    match event:
        case UserRegistered():
            return UserState(
                user_id=event.user_id,
                email=event.email,
                wallet_id=event.wallet_id,
                is_admin=event.is_admin,
                registered=True,
            )
        case AdminStatusChanged():
            return msgspec.structs.replace(state, is_admin=event.is_admin)
        case AccountBlockChanged():
            return msgspec.structs.replace(
                state, blocked=event.blocked, blocked_reason=event.reason if event.blocked else ""
            )
    return state


def normalise_email(email: str) -> str | None:
    """The stored form of an address, or None when it is not one."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or len(email) > 254:
        return None
    return email
