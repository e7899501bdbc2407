"""An admin's change to a user (PATCH /admin/users/{id}) as one command.

The adjustment and the admin flag used to be two commands in two transactions: a
retry adjusted twice, and a failure of the second half answered an error after the
first had committed. Here both are decided under the locks of the streams they write
and staged together, so `execute` commits all of it, with its idempotency key, or none.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.errors import DomainError, Invalid, NotFound
from rcc.domain.events import AdminStatusChanged, Event, user_stream, wallet_stream
from rcc.service import commands as c
from rcc.store.lot_expiries import schedule_expiries
from rcc.store.unit_of_work import UnitOfWork


class UserPatched(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    wallet_id: str
    is_admin: bool
    balance_rcc: int
    delta: int = 0


async def patch_user(cmd: c.PatchUser, uow: UnitOfWork) -> UserPatched | DomainError:
    """Adjust the balance (MANUAL_ADJUST) and/or set the admin flag, all or nothing."""
    if cmd.rcc_delta is None and cmd.is_admin is None:
        return Invalid(detail="send rcc_delta (with a reason) or is_admin")
    if cmd.expires_at is not None and cmd.rcc_delta is None:
        return Invalid(detail="expires_at needs a positive rcc_delta")
    users_stream = user_stream(cmd.user_id)
    # The user names its wallet; both heads are then locked (in id order, as every
    # writer does) and the user re-read under its lock before anything is decided.
    known = (await uow.peek(users_stream)).as_state(users.UserState)
    if not known.registered:
        return NotFound(detail="user not found")
    wallets_stream = wallet_stream(known.wallet_id)
    heads = await uow.lock(users_stream, wallets_stream)
    user = heads[users_stream].as_state(users.UserState)
    wallet = heads[wallets_stream].as_state(wallets.WalletState)
    after = wallet
    if cmd.rcc_delta is not None:
        now = datetime.now(UTC)
        adjusted = wallets.adjust(wallet, cmd.rcc_delta, cmd.actor, cmd.note, now, cmd.expires_at)
        if isinstance(adjusted, DomainError):
            return adjusted
        after = wallets.fold(adjusted, wallet)
        uow.stage(wallets_stream, heads[wallets_stream].version, adjusted, after)
        await schedule_expiries(uow.conn, wallet.wallet_id, after, adjusted)
    if cmd.is_admin is not None and cmd.is_admin != user.is_admin:
        changed: Event = AdminStatusChanged(
            user_id=cmd.user_id, is_admin=cmd.is_admin, actor=cmd.actor
        )
        user = users.evolve(user, changed)
        uow.stage(users_stream, heads[users_stream].version, [changed], user)
    return UserPatched(
        user_id=user.user_id,
        wallet_id=wallet.wallet_id,
        is_admin=user.is_admin,
        balance_rcc=after.balance,
        delta=after.balance - wallet.balance,
    )
