"""Aggregate state as of a past position or moment, folded from the log itself."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from rcc.domain import wallet as wallets
from rcc.domain.events import Event, LedgerEvent, wallet_stream
from rcc.store.event_store import RecordedEvent, read_stream_until


class LedgerLine(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger line of a wallet's history, with the balance right after it."""

    position: int
    version: int
    type: str
    reason: str
    delta: int
    balance_after: int
    recorded_at: datetime


class WalletHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A wallet as it stood, its ledger lines oldest first, and its last event."""

    state: wallets.WalletState
    lines: list[LedgerLine]
    last: RecordedEvent | None


async def wallet_as_of(
    conn: asyncpg.Connection,
    wallet_id: str,
    *,
    position: int | None = None,
    at: datetime | None = None,
) -> wallets.WalletState:
    """The wallet as it stood after global position `position` and/or at moment `at`."""
    events = await read_stream_until(conn, wallet_stream(wallet_id), position=position, at=at)
    return wallets.fold([e.decode() for e in events])


async def wallet_history_as_of(
    conn: asyncpg.Connection,
    wallet_id: str,
    *,
    position: int | None = None,
    at: datetime | None = None,
) -> WalletHistory:
    """wallet_as_of, plus every ledger line up to that point (for auditors)."""
    events = await read_stream_until(conn, wallet_stream(wallet_id), position=position, at=at)
    decoded: list[Event] = [e.decode() for e in events]
    lines, balance = [], 0
    for recorded, event in zip(events, decoded, strict=True):
        if isinstance(event, LedgerEvent):
            balance += event.delta
            lines.append(
                LedgerLine(
                    position=recorded.position,
                    version=recorded.version,
                    type=recorded.type,
                    reason=event.reason,
                    delta=event.delta,
                    balance_after=balance,
                    recorded_at=recorded.recorded_at,
                )
            )
    return WalletHistory(
        state=wallets.fold(decoded), lines=lines, last=events[-1] if events else None
    )
