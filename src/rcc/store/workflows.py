"""Workflow bodies stored once, keyed by their sha256 (schema/0011).

A JobCreated event names its workflow by digest; the body is inserted, if absent, in
the transaction that appends the event, so an event never names a body that is not
there. Bodies are never updated or deleted (grants and a trigger)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from rcc.domain.workflow import WorkflowBlob


async def store_workflows(conn: asyncpg.Connection, blobs: list[WorkflowBlob]) -> None:
    """Insert the bodies not stored yet, in the caller's transaction.

    Sorted by digest so two transactions storing the same bodies wait for each other in
    one order (no deadlock); a twin being inserted concurrently is waited for, then
    skipped if it committed."""
    unique = sorted({b.digest: b for b in blobs}.values(), key=lambda b: b.digest)
    await conn.execute(
        """INSERT INTO workflow_blobs (digest, body)
           SELECT * FROM unnest($1::bytea[], $2::bytea[])
           ON CONFLICT (digest) DO NOTHING""",
        [b.digest for b in unique],
        [b.body for b in unique],
    )


async def load_workflows(conn: asyncpg.Connection, digests: list[str]) -> dict[str, Any]:
    """The bodies of these digests (hex), by digest; unknown digests are left out."""
    rows = await conn.fetch(
        "SELECT digest, body FROM workflow_blobs WHERE digest = ANY($1::bytea[])",
        [bytes.fromhex(d) for d in set(digests)],
    )
    return {bytes(r["digest"]).hex(): msgspec.json.decode(r["body"]) for r in rows}
