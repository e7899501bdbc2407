"""/audit: the log with its hashes, balances as of any moment, and the anchors.

For auditors (token role `auditor`) and admins: an auditor checks the books without
a database connection, and the app-wide guard refuses it every write."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import msgspec
from litestar import Router, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from portal.errors import ApiError
from portal.identity import auditor_or_admin
from portal.responses import SIGNED_IN, errors
from rcc import anchors
from rcc.audit_export import MAX_PAGE, AuditEventPage, UnknownPosition, events_page
from rcc.config import Settings
from rcc.domain import wallet as wallets
from rcc.store.time_travel import LedgerLine, wallet_history_as_of

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)]
Position = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]


class WalletAsOf(msgspec.Struct, frozen=True, kw_only=True):
    """A wallet's balance and ledger (newest first) as it stood at `as_of`/`position`."""

    wallet: str
    balance_rcc: int
    as_of: datetime | None
    position: int
    ledger: list[LedgerLine]
    next_cursor: str | None = None
    # What could be spent at that instant: lots past their expiry left out even before
    # their CREDITS_EXPIRED line (balance_rcc is the sum of the ledger lines).
    available_rcc: int = 0


class AnchorPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[anchors.Anchor]
    next_cursor: str | None = None


@get("/events", responses=errors(400, *SIGNED_IN))
async def audit_events(state: State, after: Position = 0, limit: Limit = 100) -> AuditEventPage:
    """The log in commit order with each event's per-stream hash and log-chain link;
    `data` and `metadata` are PostgreSQL's jsonb text, byte for byte as hashed."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        try:
            items = await events_page(conn, after, limit)
        except UnknownPosition as unknown:
            raise ApiError(400, "unknown_position", str(unknown)) from None
    more = len(items) == limit
    return AuditEventPage(items=items, next_cursor=str(items[-1].position) if more else None)


def _as_of(text: str | None) -> tuple[int | None, datetime | None]:
    """`as_of`: a position (digits) or an RFC 3339 time with its offset."""
    if text is None:
        return None, None
    if text.isdigit():
        return int(text), None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(
            400,
            "invalid_as_of",
            "as_of is a log position or an RFC 3339 time with its offset "
            "(e.g. 2026-01-31T12:00:00Z)",
        )
    return None, moment


def _wallet_id(wallet: str) -> str:
    return wallet.removeprefix("user:")


@get("/wallets/{wallet:str}", responses=errors(400, *SIGNED_IN, 404))
async def audit_wallet(
    state: State,
    wallet: FromPath[str],
    as_of: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 100,
) -> WalletAsOf:
    """The wallet's balance as of a position or a time, folded from the log itself
    (not from a projection), and its ledger up to then, newest first."""
    position, moment = _as_of(as_of)
    if cursor is not None and not cursor.isdigit():
        raise ApiError(400, "invalid_cursor", "cursor is the next_cursor of a previous page")
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        history = await wallet_history_as_of(conn, _wallet_id(wallet), position=position, at=moment)
        if history.last is None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM streams WHERE stream_id = $1)",
            f"wallet-{_wallet_id(wallet)}",
        ):
            raise ApiError(404, "not_found", f"no wallet {wallet}")
    newest_first = history.lines[::-1]
    if cursor is not None:
        newest_first = [line for line in newest_first if line.position < int(cursor)]
    page = newest_first[:limit]
    more = len(newest_first) > limit
    last = history.last
    instant = moment or (last.recorded_at if last else datetime.now(UTC))
    return WalletAsOf(
        available_rcc=wallets.spendable(history.state, instant),
        wallet=wallet,
        balance_rcc=history.state.balance,
        as_of=moment or (last.recorded_at if last else None),
        position=last.position if last else 0,
        ledger=page,
        next_cursor=str(page[-1].position) if more else None,
    )


@get("/anchors", responses=errors(400, *SIGNED_IN))
async def audit_anchors(
    state: State, cursor: FromQuery[str | None] = None, limit: Limit = 100
) -> AnchorPage:
    """The signed anchors found in RCC_AUDIT_ANCHOR_DIR, oldest first (check them with
    the service's public key, `rcc audit public-key`)."""
    settings: Settings = state.settings
    directory = settings.audit.anchor_dir
    paths = anchors.found_in(directory) if directory else []
    if cursor is not None:
        paths = [p for p in paths if p.name > Path(cursor).name]
    items = []
    for path in paths[:limit]:
        try:
            items.append(anchors.read(path))
        except anchors.AnchorError:
            continue  # a file that is not an anchor is not one to show
    more = len(paths) > limit
    return AnchorPage(items=items, next_cursor=paths[limit - 1].name if more else None)


router = Router(
    path="/audit",
    route_handlers=[audit_events, audit_wallet, audit_anchors],
    guards=[auditor_or_admin],
    tags=["audit"],
)
