"""The workspace in use: the person's own wallet, or an organisation they belong to
(a cookie the header's switcher sets). The header shows that wallet's balance and the
Run page charges it by default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Request

from rcc.domain import org as orgs
from rcc.domain import wallet as wallets
from rcc.service.org_reads import org_now

COOKIE = "rcc_workspace"


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    name: str


class Workspace(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str | None  # None: the person's own wallet
    name: str
    balance_rcc: int | None  # the org's, when an org is in use
    choices: list[Choice]

    @property
    def wallet(self) -> str:
        return f"org:{self.org_id}" if self.org_id else ""


async def my_orgs(conn: asyncpg.Connection, user_id: str) -> list[Choice]:
    """The orgs a person belongs to (read model), by name."""
    rows = await conn.fetch(
        """SELECT o.id, o.name FROM org_members m JOIN orgs o ON o.id = m.org_id
            WHERE m.user_id = $1 AND m.active ORDER BY o.name, o.id""",
        user_id,
    )
    return [Choice(org_id=r["id"], name=r["name"]) for r in rows]


async def workspace_of(
    request: Request[Any, Any, Any], conn: asyncpg.Connection, user_id: str
) -> Workspace:
    """The workspace the cookie names, if the person is (still) a member of it."""
    choices = await my_orgs(conn, user_id)
    wanted = request.cookies.get(COOKIE)
    if wanted:
        org, wallet = await org_now(conn, wanted)
        if orgs.role_of(org, user_id) is not None:
            balance = wallets.spendable(wallet, datetime.now(UTC))
            return Workspace(org_id=org.org_id, name=org.name, balance_rcc=balance, choices=choices)
    return Workspace(org_id=None, name="Personal", balance_rcc=None, choices=choices)
