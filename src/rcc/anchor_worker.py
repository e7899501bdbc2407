"""The anchor worker: every RCC_AUDIT_ANCHOR_EVERY_S it extends the log chain and,
when the log has grown, writes a signed anchor into RCC_AUDIT_ANCHOR_DIR (`rcc serve`).

The directory should be somewhere the database's administrators cannot rewrite (another
machine's mount, an append-only bucket synced from it): an anchor is only evidence
while it is out of an attacker's reach (docs/AUDIT.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rcc import anchors
from rcc.config import Settings
from rcc.store.log_chain import extend_chain

log = logging.getLogger("rcc.anchors")


class AnchorWorker:
    """`anchor_once()` once, or `run()` until `stop()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        directory: Path,
        key: Ed25519PrivateKey,
        *,
        every_s: float = 3600.0,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.key = key
        self.every_s = every_s
        self.stop_event = stop_event or asyncio.Event()
        self._last_events: int | None = None

    def stop(self) -> None:
        """Finish the anchor in hand and return from `run()`."""
        self.stop_event.set()

    async def anchor_once(self) -> Path | None:
        """Extend the chain; write an anchor if the log grew since the last one."""
        if self._last_events is None:
            found = anchors.found_in(self.directory)
            self._last_events = anchors.read(found[-1]).events if found else -1
        async with self.pool.acquire() as conn:
            head = await extend_chain(conn)
        if head.events == self._last_events:
            return None
        path = anchors.write_in(self.directory, anchors.sign(head, self.key, datetime.now(UTC)))
        self._last_events = head.events
        log.info(
            "anchor of %s events (position %s) written to %s", head.events, head.position, path
        )
        return path

    async def run(self) -> None:
        """Anchor at once, then every `every_s`; a failure is logged and retried."""
        while not self.stop_event.is_set():
            try:
                await self.anchor_once()
            except (OSError, asyncpg.PostgresError, anchors.AnchorError) as error:
                log.error("anchor not written: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.every_s)


@contextlib.asynccontextmanager
async def running_anchor_writer(settings: Settings) -> AsyncIterator[AnchorWorker | None]:
    """The anchor worker for the life of the block when RCC_AUDIT_ANCHOR_DIR is set
    (refuses to start without a good RCC_AUDIT_KEY); nothing otherwise."""
    audit = settings.audit
    if audit.anchor_dir is None:
        yield None
        return
    try:
        key = anchors.signing_key(audit.key_hex)
    except anchors.AnchorKeyError as error:
        raise SystemExit(f"RCC_AUDIT_ANCHOR_DIR is set but {error}") from None
    from rcc.background import running

    def make(pool: asyncpg.Pool) -> AnchorWorker:
        assert audit.anchor_dir is not None
        return AnchorWorker(pool, audit.anchor_dir, key, every_s=audit.anchor_every_s)

    async with running(settings, make, pool_size=2, name="rcc-anchor-writer") as worker:
        yield worker
