"""Did it commit? The answer to a COMMIT whose reply was lost.

Every transaction of the unit of work inserts its id (it answers for every command it
carries) into `command_ids` right before its COMMIT (schema/0008_command_ids.sql). When the
connection dies while that COMMIT is in flight, the outcome is unknown to us: the
server may have committed and then lost the socket, or never received the COMMIT.
`committed` asks a fresh connection, and fences the id at the same time so that a
COMMIT still on its way cannot land after we have answered "did not commit".
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import asyncpg

log = logging.getLogger(__name__)

# How long an uncertain commit is checked before the answer is 503 outcome_unknown. A
# PostgreSQL restart takes a second or two; a client's own timeout is usually longer.
CHECK_FOR_S = 8.0
_FIRST_PAUSE_S = 0.05
_LONGEST_PAUSE_S = 0.5

# What a client of the database meets while it is away or restarting.
DATABASE_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # 08xxx
    asyncpg.OperatorInterventionError,  # 57P0x: shutting down, starting up
    asyncpg.InterfaceError,  # the connection closed under the query
    asyncpg.InternalClientError,  # a pooled connection left mid-operation by an outage
)


class OutcomeUnknown(ConnectionError):
    """A COMMIT was sent, its reply was lost, and whether it took effect could not be
    found out in time. A ConnectionError, so every caller that already treats a lost
    database as "try again later" keeps doing so; the portal answers 503 outcome_unknown."""

    def __init__(self, command_id: uuid.UUID) -> None:
        super().__init__(f"the outcome of command {command_id} is unknown")
        self.command_id = command_id


def new_command_id() -> uuid.UUID:
    """A UUIDv7-shaped id: milliseconds first, so the index of ids grows at one end."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def record_and_commit(command_id: uuid.UUID) -> str:
    """The one statement that ends a transaction: record its command id, then COMMIT.

    Sent as one simple query, so recording the id costs no round trip of its own. The
    id is a uuid we made, so its text is safe to inline."""
    return f"INSERT INTO command_ids (id) VALUES ('{command_id}'); COMMIT"


async def committed(
    pool: asyncpg.Pool, command_id: uuid.UUID, *, within_s: float = CHECK_FOR_S
) -> bool:
    """Whether the transaction that carried `command_id` committed.

    Inserts the id as fenced: if that succeeds, the transaction had not committed and
    now never will (its own INSERT of the id would fail). If the id is there already,
    it committed (or an earlier attempt of this check fenced it: the row says which).
    Retries while the database is away; raises OutcomeUnknown after `within_s`."""
    deadline = time.monotonic() + within_s
    pause = _FIRST_PAUSE_S
    while True:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                return await _check_once(pool, command_id)
        except DATABASE_AWAY as error:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("outcome of command %s unknown: %s", command_id, error)
                raise OutcomeUnknown(command_id) from error
        except Exception as error:
            # Whatever else went wrong, nothing is known: never report "not committed".
            log.exception("checking the outcome of command %s failed", command_id)
            raise OutcomeUnknown(command_id) from error
        await asyncio.sleep(min(pause, left))  # the last try comes at the deadline
        pause = min(pause * 2, _LONGEST_PAUSE_S)


async def _check_once(pool: asyncpg.Pool, command_id: uuid.UUID) -> bool:
    async with pool.acquire() as conn:
        # Waits on the unique index while the lost transaction is still in progress.
        fenced = await conn.fetchval(
            """INSERT INTO command_ids (id, fenced) VALUES ($1, true)
               ON CONFLICT (id) DO NOTHING RETURNING id""",
            command_id,
        )
        if fenced is not None:
            return False
        # A new statement, so a new snapshot: it sees the row the INSERT waited for.
        was_fenced = await conn.fetchval("SELECT fenced FROM command_ids WHERE id = $1", command_id)
        assert was_fenced is not None, "a conflicting id is visible to the next statement"
        return not was_fenced
