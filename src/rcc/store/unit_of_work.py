"""One transaction: serialise on idempotency keys, lock stream heads, stage events,
remember keys, record the command ids and commit (checking the outcome if COMMIT's
reply is lost)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import Event
from rcc.domain.lots import Lot
from rcc.domain.wallet import WalletState
from rcc.domain.workflow import WorkflowBlob
from rcc.store.event_store import Appended, StreamWrite, append
from rcc.store.heads import Head as Head  # re-exported: the unit of work hands out heads
from rcc.store.heads import read_head
from rcc.store.notify import events_committed
from rcc.store.outcome import committed, new_command_id, record_and_commit
from rcc.store.wallet_lots import (
    LotChanges,
    Row,
    is_wallet,
    lot_number,
    lots_cte,
    read_lots,
    read_named_lots,
    wider,
)
from rcc.store.workflows import store_workflows

log = logging.getLogger(__name__)

# The first int4 of the two-int4 advisory lock form: a key space of its own, apart
# from the bigint locks of the projector, the adapter and the migrator.
KEY_LOCK_SPACE = 0x52434331  # "RCC1"


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


def key_lock(key: str) -> int:
    """The advisory lock id of an idempotency key (a collision only serialises two keys)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


class UnitOfWork:
    """A transaction on one pooled connection; leaving without commit() rolls back.

    The transaction is begun and ended with plain BEGIN / COMMIT statements (not
    asyncpg's Transaction) so that the COMMIT can carry the command ids in the same
    round trip. `command_id` names the transaction: the commands it carries (one, or a
    group of job creations sharing it) commit or not together, so one id answers for all
    of them, and a group records one row, not one per command."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._pool = pool
        self.metadata = metadata or {}
        self.command_id = new_command_id()
        self._writes: dict[str, StreamWrite] = {}
        self._workflows: list[WorkflowBlob] = []
        # The lots loaded per wallet stream (what commit diffs against), and for the
        # wallets of which only the front was loaded, how many (see rcc.store.wallet_lots).
        self._lots_seen: dict[str, dict[str, Row]] = {}
        self._lots_front: dict[str, int] = {}
        self._conn: Any = None
        self._open = False

    @property
    def conn(self) -> asyncpg.Connection:
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._pool.acquire()
        try:
            await self._conn.execute("BEGIN")
        except BaseException:  # a cancelled caller must not keep the connection
            await self._release()
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._open:
                self._open = False
                await self._conn.execute("ROLLBACK")
        except Exception:
            # The connection is gone or broken: the server rolls back when it closes,
            # and the error that brought us here is the one worth raising.
            self._discard()
        finally:
            await self._release()

    def _discard(self) -> None:
        """Close the connection at once. A connection that was cut has already been taken
        back by the pool (asyncpg then refuses every call on it): nothing left to close."""
        with contextlib.suppress(asyncpg.InterfaceError):
            self._conn.terminate()

    async def _release(self) -> None:
        """Give the connection back. Its reset can fail on a connection cut right after
        the COMMIT's reply; asyncpg then discards it, and that failure must not read as
        a failed command (the caller would answer an error, or run it again)."""
        try:
            await self._pool.release(self._conn)
        except Exception as error:
            log.info("connection discarded on release: %s: %s", type(error).__name__, error)

    async def serialise(self, *keys: str) -> dict[str, Remembered]:
        """Wait for every other transaction holding one of these idempotency keys, then
        return the keys' stored answers.

        Called first in the transaction, before any row lock: a second arrival under a
        key waits here until the first has committed or rolled back, and then sees its
        answer. The locks are taken in one fixed order (ascending lock id) and never
        while holding a row lock, so key locks cannot take part in a deadlock."""
        locks = sorted({key_lock(key) for key in keys})
        # unnest yields the ids in array order; the locks are taken row by row in it.
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, id) FROM unnest($2::int4[]) AS id",
            KEY_LOCK_SPACE,
            locks,
        )
        # A statement of its own: its snapshot is taken after the waits above.
        return await self.recall(*keys)

    async def lock(
        self,
        *stream_ids: str,
        lots_of: Mapping[str, Sequence[str]] | None = None,
        front: int | None = None,
    ) -> dict[str, Head]:
        """Lock the heads of existing streams (in id order) and return them, wallets with
        all their lots (or the `front` ones) or, for those in `lots_of`, only the lots
        named there (see rcc.store.wallet_lots).

        Streams that do not exist yet come back as version 0 with an empty state.
        """
        rows = await self._conn.fetch(
            """SELECT stream_id, version, state FROM streams
                WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE""",
            list(stream_ids),
        )
        found = {r["stream_id"]: Head(r["version"], r["state"]) for r in rows}
        named = {sid: head for sid, head in found.items() if lots_of and sid in lots_of}
        found |= await self.with_named_lots(named, lots_of or {})
        found |= await self.with_lots({s: h for s, h in found.items() if s not in named}, front)
        return {sid: found.get(sid, Head(0, {})) for sid in stream_ids}

    async def with_lots(
        self, heads: dict[str, Head], front: int | Mapping[str, int] | None = None
    ) -> dict[str, Head]:
        """The heads with their wallets' lots read from `wallet_lots` (all of them, or
        the first `front` with credits left, per wallet if a mapping) and remembered for
        the commit's diff. Call only once the heads are locked."""
        wallets = [sid for sid, head in heads.items() if is_wallet(sid) and head.version]
        if not wallets:
            return heads
        if isinstance(front, Mapping):
            fronts = [front.get(sid) for sid in wallets]
        else:
            fronts = [front] * len(wallets)
        lots = await read_lots(self._conn, wallets, fronts)
        out = dict(heads)
        for sid, first in zip(wallets, fronts, strict=True):
            self._lots_seen[sid] = {row[0]: row for row in lots[sid]}
            if first is None:
                self._lots_front.pop(sid, None)
            else:
                self._lots_front[sid] = first
            out[sid] = Head(heads[sid].version, {**heads[sid].state, "lots": lots[sid]})
        return out

    async def with_named_lots(
        self, heads: dict[str, Head], lots_of: Mapping[str, Sequence[str]]
    ) -> dict[str, Head]:
        """The heads with only the named lots of their wallets (those a job or hold drew
        from, all that its end can touch), remembered like `with_lots`."""
        wallets = [sid for sid, head in heads.items() if is_wallet(sid) and head.version]
        out = dict(heads)
        for sid in wallets:
            lots = await read_named_lots(self._conn, sid, lots_of[sid])
            self._lots_seen[sid] = {row[0]: row for row in lots}
            self._lots_front[sid] = 0
            out[sid] = Head(heads[sid].version, {**heads[sid].state, "lots": lots})
        return out

    async def more_lots(self, stream_id: str, state: WalletState) -> WalletState | None:
        """`state` with a wider front of its wallet's lots (rcc.store.wallet_lots.wider),
        or every lot; None when all were loaded already (deciding again would change
        nothing). Lots this transaction changed keep their changed values."""
        if stream_id not in self._lots_front:
            return None
        front = wider(self._lots_front[stream_id])
        rows = (await read_lots(self._conn, [stream_id], [front]))[stream_id]
        if front is None or len(rows) < front:
            # Every lot with credits left is loaded: no draw can find more.
            del self._lots_front[stream_id]
        else:
            self._lots_front[stream_id] = front
        seen = self._lots_seen[stream_id]
        fresh = [row for row in rows if row[0] not in seen]
        seen.update({row[0]: row for row in fresh})
        more = (msgspec.convert(row, Lot) for row in fresh)
        lots = tuple(sorted((*state.lots, *more), key=lot_number))  # as made, as folded
        return msgspec.structs.replace(state, lots=lots)

    async def lock_wallet_of(
        self, user_stream: str, *, front: int | None = None
    ) -> tuple[Head, str, Head] | None:
        """A user's head and its wallet's head, the wallet locked, with all its lots or
        (`front`) the first lots in spending order.

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
        wallet = row["wallet_stream"]
        heads = await self.with_lots(
            {wallet: Head(row["wallet_version"], row["wallet_state"])}, front
        )
        return Head(row["user_version"], row["user_state"]), wallet, heads[wallet]

    async def peek(self, stream_id: str) -> Head:
        """A head without locking it, for streams this command only reads (a wallet
        with all its lots: nothing is staged from a peek, so they are not remembered)."""
        return await read_head(self._conn, stream_id)

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
        where the events landed), then commit with the command ids.

        Raises KeyTaken if a concurrent command committed one of the keys first (only a
        writer that did not `serialise` on its key can get there first); the transaction
        is then rolled back on exit and nothing of this one remains. A lost COMMIT reply
        is resolved before returning: see `_commit`.
        """
        writes, lots = self._lots_out([w for w in self._writes.values() if w.events])
        if self._workflows:
            await store_workflows(self._conn, self._workflows)
        # A command that changes nothing (say, making an admin an admin) appends nothing
        # (and, having no events, moves no lots). The lots' rows go in the append's
        # round trip.
        appended = await append(self._conn, writes, with_=lots_cte(lots, 8)) if writes else []
        if remember:
            await self._store_keys(remember, appended[-1] if appended else None)
        await self._commit()
        if appended:
            events_committed(self._pool)
        return appended

    def _lots_out(self, writes: list[StreamWrite]) -> tuple[list[StreamWrite], LotChanges]:
        """The writes with the lots kept out of the cached wallet heads, and what changed
        in `wallet_lots` since the lots were loaded (see rcc.store.wallet_lots)."""
        changes = LotChanges()
        out: list[StreamWrite] = []
        for write in writes:
            if isinstance(write.state, WalletState):
                changes.add(write.stream_id, self._lots_seen.get(write.stream_id, {}), write.state)
                write = msgspec.structs.replace(
                    write, state=msgspec.structs.replace(write.state, lots=())
                )
            out.append(write)
        return out, changes

    async def _commit(self) -> None:
        """COMMIT with the command ids. If its reply is lost, find out whether it took
        effect: return if it did, re-raise the error if it certainly did not, raise
        OutcomeUnknown if that cannot be found out in time."""
        try:
            await self._conn.execute(record_and_commit(self.command_id))
        except BaseException as error:
            self._open = False
            # Never back to the pool half-way through a COMMIT; closing the socket also
            # makes the server end the transaction if it is still open.
            self._discard()
            if isinstance(error, asyncio.CancelledError) or not isinstance(error, Exception):
                raise
            if not await committed(self._pool, self.command_id):
                raise
            log.warning(
                "COMMIT of command %s answered %s, yet it committed",
                self.command_id,
                type(error).__name__,
            )
        self._open = False

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
