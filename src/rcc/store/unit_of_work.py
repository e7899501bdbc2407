"""One command, one transaction: lock stream heads, stage events, remember the key, commit."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import msgspec

from rcc.domain.events import Event
from rcc.store.event_store import Appended, StreamWrite, append

S = TypeVar("S", bound=msgspec.Struct)


class Head(msgspec.Struct, frozen=True):
    """A stream's current version and cached folded state (version 0: no such stream)."""

    version: int
    state: dict[str, Any]

    def as_state(self, state_type: type[S]) -> S:
        return msgspec.convert(self.state, state_type)


class Remembered(msgspec.Struct, frozen=True):
    fingerprint: bytes
    result: Any


class KeyTaken(Exception):
    """Another transaction committed the same idempotency key first."""

    def __init__(self, remembered: Remembered) -> None:
        self.remembered = remembered


class UnitOfWork:
    """A transaction on one pooled connection; leaving without commit() rolls back."""

    def __init__(self, pool: asyncpg.Pool, metadata: dict[str, Any] | None = None) -> None:
        self._pool = pool
        self.metadata = metadata or {}
        self._writes: dict[str, StreamWrite] = {}
        self._conn: Any = None
        self._tx: Any = None

    @property
    def conn(self) -> asyncpg.Connection:
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None:
                await self._tx.rollback()
        finally:
            await self._pool.release(self._conn)

    async def lock(self, *stream_ids: str) -> dict[str, Head]:
        """Lock the heads of existing streams (in id order) and return them.

        Streams that do not exist yet come back as version 0 with an empty state.
        """
        rows = await self._conn.fetch(
            """SELECT stream_id, version, state FROM streams
                WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE""",
            list(stream_ids),
        )
        found = {r["stream_id"]: Head(r["version"], r["state"]) for r in rows}
        return {sid: found.get(sid, Head(0, {})) for sid in stream_ids}

    async def peek(self, stream_id: str) -> Head:
        """A head without locking it, for streams this command only reads."""
        row = await self._conn.fetchrow(
            "SELECT version, state FROM streams WHERE stream_id = $1", stream_id
        )
        return Head(row["version"], row["state"]) if row else Head(0, {})

    def stage(
        self, stream_id: str, expected_version: int, events: list[Event], state: Any = None
    ) -> None:
        """Queue events for a stream, with the version they were decided on."""
        previous = self._writes.get(stream_id)
        if previous is not None:
            events = [*previous.events, *events]
            expected_version = previous.expected_version
        self._writes[stream_id] = StreamWrite(
            stream_id=stream_id, expected_version=expected_version, events=events, state=state
        )

    async def recall(self, key: str) -> Remembered | None:
        row = await self._conn.fetchrow(
            "SELECT fingerprint, result FROM idempotency_keys WHERE key = $1", key
        )
        return Remembered(row["fingerprint"], row["result"]) if row else None

    async def commit(
        self, remember: tuple[str, bytes] | None = None, result: Any = None
    ) -> list[Appended]:
        """Append every staged write, store the idempotency record with what the
        command answered (and where its events landed), then commit.

        Raises KeyTaken if a concurrent command committed the same key first; the
        transaction is then rolled back on exit and nothing of this one remains.
        """
        writes = [w for w in self._writes.values() if w.events]
        # A command that changes nothing (say, making an admin an admin) appends nothing.
        appended = await append(self._conn, writes, self.metadata) if writes else []
        if remember is not None:
            key, fingerprint = remember
            last = appended[-1] if appended else None
            result = {
                "result": msgspec.to_builtins(result),
                "checkpoint": [last.tx_id, last.position] if last else [0, 0],
                "recorded_at": last.recorded_at.isoformat() if last else None,
            }
            # Waits for a concurrent holder of the key; if it commits, nothing is inserted.
            stored = await self._conn.fetchval(
                """INSERT INTO idempotency_keys (key, fingerprint, result) VALUES ($1, $2, $3)
                   ON CONFLICT (key) DO NOTHING RETURNING true""",
                key,
                fingerprint,
                msgspec.json.encode(result).decode(),
            )
            if not stored:
                remembered = await self.recall(key)
                assert remembered is not None
                raise KeyTaken(remembered)
        await self._tx.commit()
        self._tx = None
        return appended
