"""The guard that keeps blocked accounts from spending: 403 `account_blocked`.

Jobs check the block in their own decision (under the wallet lock); checkouts (and
holds at merge) put this guard on their route."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from portal.errors import ApiError
from portal.identity import require_identity
from rcc.service.blocks import user_block


async def not_blocked(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: refuse a blocked user's spending command, naming the admin's reason."""
    who = await require_identity(connection)
    if who.user_id is None:
        return
    if refused := await user_block(connection.app.state.pool, who.user_id):
        raise ApiError(403, "account_blocked", refused.detail, reason=refused.reason)
