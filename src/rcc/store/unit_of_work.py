"""One transaction: lock stream heads, stage events, remember idempotency keys, commit."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import msgspec

from rcc.domain.events import Event
from rcc.domain.workflow import WorkflowBlob
from rcc.store.event_store import Appended, StreamWrite, append
from rcc.store.notify import events_committed
from rcc.store.workflows import store_workflows

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


class Remember(msgspec.Struct, frozen=True):
    """An idempotency key to store with this transaction, and the answer it gave."""

    key: str
    fingerprint: bytes
    result: Any


class KeyTaken(Exception):
    """Another transaction committed the same idempotency key first."""

    def __init__(self, key: str, remembered: Remembered) -> None:
        self.key = key
        self.remembered = remembered


class UnitOfWork:
    """A transaction on one pooled connection; leaving without commit() rolls back."""

    def __init__(self, pool: asyncpg.Pool, metadata: dict[str, Any] | None = None) -> None:
        self._pool = pool
        self.metadata = metadata or {}
        self._writes: dict[str, StreamWrite] = {}
        self._workflows: list[WorkflowBlob] = []
        self._conn: Any = None
        self._tx: Any = None

    @property
    def conn(self) -> asyncpg.Connection:
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._pool.acquire()
        self._tx = self._conn.transaction()
        try:
            await self._tx.start()
        except BaseException:  # a cancelled caller must not keep the connection
            await self._pool.release(self._conn)
            raise
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

    async def lock_wallet_of(self, user_stream: str) -> tuple[Head, str, Head] | None:
        """A user's head and its wallet's head, the wallet locked: one round trip.

        None when the user or its wallet does not exist."""
        row = await self._conn.fetchrow(
            """SELECT u.version AS user_version, u.state AS user_state,
                      w.stream_id AS wallet_stream, w.version AS wallet_version,
                      w.state AS wallet_state
                 FROM streams u
                 JOIN streams w ON w.stream_id = 'wallet-' || (u.state->>'wallet_id')
                WHERE u.stream_id = $1
                  FOR UPDATE OF w""",
            user_stream,
        )
        if row is None:
            return None
        return (
            Head(row["user_version"], row["user_state"]),
            row["wallet_stream"],
            Head(row["wallet_version"], row["wallet_state"]),
        )

    async def peek(self, stream_id: str) -> Head:
        """A head without locking it, for streams this command only reads."""
        row = await self._conn.fetchrow(
            "SELECT version, state FROM streams WHERE stream_id = $1", stream_id
        )
        return Head(row["version"], row["state"]) if row else Head(0, {})

    def stage(
        self,
        stream_id: str,
        expected_version: int,
        events: list[Event],
        state: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Queue events for a stream, with the version they were decided on.

        `metadata` overrides the unit's metadata for these events (a coalesced batch
        carries several commands, each with its own actor and request)."""
        previous = self._writes.get(stream_id)
        own = [metadata or self.metadata] * len(events)
        if previous is not None:
            before = previous.metadata or [self.metadata] * len(previous.events)
            events, own = [*previous.events, *events], [*before, *own]
            expected_version = previous.expected_version
            state = state if state is not None else previous.state
        self._writes[stream_id] = StreamWrite(
            stream_id=stream_id,
            expected_version=expected_version,
            events=events,
            state=state,
            metadata=own,
        )

    def keep_workflow(self, blob: WorkflowBlob) -> None:
        """Store this workflow body (if absent) with the events that name its digest."""
        self._workflows.append(blob)

    async def recall(self, *keys: str) -> dict[str, Remembered]:
        """The stored answers of these idempotency keys (those that have one)."""
        rows = await self._conn.fetch(
            "SELECT key, fingerprint, result FROM idempotency_keys WHERE key = ANY($1::text[])",
            list(keys),
        )
        return {r["key"]: Remembered(bytes(r["fingerprint"]), r["result"]) for r in rows}

    async def commit(self, remember: list[Remember] | None = None) -> list[Appended]:
        """Append every staged write, store each idempotency key with its answer (and
        where the events landed), then commit.

        Raises KeyTaken if a concurrent command committed one of the keys first; the
        transaction is then rolled back on exit and nothing of this one remains.
        """
        writes = [w for w in self._writes.values() if w.events]
        if self._workflows:
            await store_workflows(self._conn, self._workflows)
        # A command that changes nothing (say, making an admin an admin) appends nothing.
        appended = await append(self._conn, writes) if writes else []
        if remember:
            await self._store_keys(remember, appended[-1] if appended else None)
        await self._tx.commit()
        self._tx = None
        if appended:
            events_committed(self._pool)
        return appended

    async def _store_keys(self, remember: list[Remember], last: Appended | None) -> None:
        where = {
            "checkpoint": [last.tx_id, last.position] if last else [0, 0],
            "recorded_at": last.recorded_at.isoformat() if last else None,
        }
        # Waits for a concurrent holder of a key; if it commits, that key is not inserted.
        stored = await self._conn.fetch(
            """INSERT INTO idempotency_keys (key, fingerprint, result)
               SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[])
               ON CONFLICT (key) DO NOTHING RETURNING key""",
            [r.key for r in remember],
            [r.fingerprint for r in remember],
            [
                msgspec.json.encode({"result": msgspec.to_builtins(r.result), **where}).decode()
                for r in remember
            ],
        )
        if len(stored) < len(remember):
            taken = {r.key for r in remember} - {row["key"] for row in stored}
            key = sorted(taken)[0]
            remembered = (await self.recall(key))[key]
            raise KeyTaken(key, remembered)
