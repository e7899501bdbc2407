"""The operations log: the PRD's logs (user, ip, action, status, time).

Admin actions, sign-ins, ComfyUI container and model operations are events of their
own; each becomes one entry whose id is the event's position. The command metadata
adds who acted and from which ip (`actor`, `ip` or `client_ip`) when the event does
not say. Failed operations are events too (a refused sign-in), with their status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from projections._wallets import wallet_of
from rcc.domain.events import (
    AdminStatusChanged,
    BackendAdded,
    BackendChanged,
    BackendDrained,
    BackendRemoved,
    ComfyuiOperated,
    CreditsAdjusted,
    JobCancelled,
    ModelDeleted,
    ModelInstalled,
    ModelInstallFailed,
    ModelInstallRequested,
    SignInAttempted,
    UserRegistered,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "ops_log"
TABLES = ("ops_log",)


@dataclass
class Entry:
    id: int
    at: datetime
    user_id: str | None
    actor: str | None
    ip: str | None
    action: str
    status: str
    detail: str


@dataclass
class Batch:
    entries: list[Entry] = field(default_factory=list)

    def add(
        self,
        record: RecordedEvent,
        action: str,
        *,
        user_id: str | None = None,
        actor: str | None = None,
        ip: str | None = None,
        status: str = "ok",
        detail: str = "",
    ) -> None:
        meta = record.metadata
        self.entries.append(
            Entry(
                id=record.position,
                at=record.recorded_at,
                user_id=user_id,
                actor=actor or _text(meta.get("actor")),
                ip=ip or _text(meta.get("ip")) or _text(meta.get("client_ip")),
                action=action,
                status=status,
                detail=detail,
            )
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def on_registered(batch: Batch, event: UserRegistered, record: RecordedEvent) -> None:
    batch.add(record, "user.register", user_id=event.user_id, detail=event.email)


def on_admin(batch: Batch, event: AdminStatusChanged, record: RecordedEvent) -> None:
    action = "admin.grant_admin" if event.is_admin else "admin.revoke_admin"
    batch.add(record, action, user_id=event.user_id, actor=event.actor)


def on_adjusted(batch: Batch, event: CreditsAdjusted, record: RecordedEvent) -> None:
    wallet_id = wallet_of(record.stream_id)
    batch.add(
        record,
        "admin.adjust_credits",
        actor=event.actor,
        detail=f"wallet {wallet_id}: {event.amount:+d} RCC ({event.note})",
    )


def on_cancelled(batch: Batch, event: JobCancelled, record: RecordedEvent) -> None:
    batch.add(record, "job.cancel", actor=event.actor, detail=f"job {event.job_id}")


def on_sign_in(batch: Batch, event: SignInAttempted, record: RecordedEvent) -> None:
    batch.add(
        record,
        f"auth.sign_in.{event.method}",
        user_id=event.user_id,
        actor=event.email,
        ip=event.ip,
        status=event.outcome,
        detail=event.reason,
    )


def on_comfyui(batch: Batch, event: ComfyuiOperated, record: RecordedEvent) -> None:
    where = f"{event.container} ({event.image})" if event.image else event.container
    detail = f"{where}: {event.detail}" if where else event.detail
    batch.add(record, f"comfyui.{event.action}", status=event.status, detail=detail)


def on_model_requested(batch: Batch, event: ModelInstallRequested, record: RecordedEvent) -> None:
    again = " (overwrite)" if event.overwrite else ""
    detail = f"{event.kind}/{event.name} from {event.source}{again}"
    batch.add(record, "model.install", status="requested", detail=detail)


def on_model_installed(batch: Batch, event: ModelInstalled, record: RecordedEvent) -> None:
    detail = f"{event.kind}/{event.name}: {event.size_bytes} bytes, sha256 {event.sha256}"
    batch.add(record, "model.install", status="installed", detail=detail)


def on_model_failed(batch: Batch, event: ModelInstallFailed, record: RecordedEvent) -> None:
    detail = f"{event.kind}/{event.name}: {event.error}"
    batch.add(record, "model.install", status="failed", detail=detail)


def on_model_deleted(batch: Batch, event: ModelDeleted, record: RecordedEvent) -> None:
    batch.add(record, "model.delete", detail=f"{event.kind}/{event.name}")


# --- the GPU pool (h8): who added, changed, drained or removed a backend ---------------


def on_backend_added(batch: Batch, event: BackendAdded, record: RecordedEvent) -> None:
    tags = ", ".join(event.tags) or "no tags"
    detail = f"{event.url}: {event.slots} slots, {tags}"
    batch.add(record, "backend.add", actor=event.actor, detail=detail)


def on_backend_changed(batch: Batch, event: BackendChanged, record: RecordedEvent) -> None:
    detail = f"{event.backend_id}: {event.slots} slots, {', '.join(event.tags) or 'no tags'}"
    batch.add(record, "backend.change", actor=event.actor, detail=detail)


def on_backend_drained(batch: Batch, event: BackendDrained, record: RecordedEvent) -> None:
    action = "backend.drain" if event.draining else "backend.undrain"
    batch.add(record, action, actor=event.actor, detail=event.backend_id)


def on_backend_removed(batch: Batch, event: BackendRemoved, record: RecordedEvent) -> None:
    batch.add(record, "backend.remove", actor=event.actor, detail=event.url)


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    rows = batch.entries
    await conn.execute(
        """INSERT INTO ops_log (id, at, user_id, actor, ip, action, status, detail)
           SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],
                                $5::text[], $6::text[], $7::text[], $8::text[])""",
        [e.id for e in rows],
        [e.at for e in rows],
        [e.user_id for e in rows],
        [e.actor for e in rows],
        [e.ip for e in rows],
        [e.action for e in rows],
        [e.status for e in rows],
        [e.detail for e in rows],
    )


HANDLERS: dict[type, Handler[Batch]] = {
    UserRegistered: on_registered,
    AdminStatusChanged: on_admin,
    CreditsAdjusted: on_adjusted,
    JobCancelled: on_cancelled,
    SignInAttempted: on_sign_in,
    ComfyuiOperated: on_comfyui,
    ModelInstallRequested: on_model_requested,
    ModelInstalled: on_model_installed,
    ModelInstallFailed: on_model_failed,
    ModelDeleted: on_model_deleted,
    # the GPU pool (h8)
    BackendAdded: on_backend_added,
    BackendChanged: on_backend_changed,
    BackendDrained: on_backend_drained,
    BackendRemoved: on_backend_removed,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
