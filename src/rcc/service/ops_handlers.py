"""Operations handlers: ComfyUI container operations and model files.

Model installs keep a progress row (`model_downloads`) beside their events: it is
created with the request and removed with the outcome, in the same transactions, so a
download that is in progress always has one, and a row nobody updates any more marks a
download whose process died. The routing table is at the bottom.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rcc.domain import model_files as models
from rcc.domain.errors import DomainError, Invalid, NotFound
from rcc.domain.events import OPS_COMFYUI_STREAM, ComfyuiOperated, Event, model_stream
from rcc.service import ops_commands as oc
from rcc.service.commands import Command
from rcc.store.unit_of_work import UnitOfWork

ACTIONS = frozenset({"start", "stop", "restart"})


class ModelMoved(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    install_id: str = ""
    abandoned: str = ""  # the install id closed as dead before this one started


async def record_comfyui_operation(
    cmd: oc.RecordComfyuiOperation, uow: UnitOfWork
) -> dict[str, str] | DomainError:
    """Append the operation to `ops-comfyui` (one stream: its order is the history)."""
    if cmd.action not in ACTIONS or cmd.status not in {"ok", "failed"}:
        return Invalid(detail=f"not a container operation: {cmd.action} {cmd.status}")
    head = (await uow.lock(OPS_COMFYUI_STREAM))[OPS_COMFYUI_STREAM]
    event = ComfyuiOperated(
        action=cmd.action,
        status=cmd.status,
        detail=cmd.detail,
        container=cmd.container,
        image=cmd.image,
    )
    uow.stage(OPS_COMFYUI_STREAM, head.version, [event])
    return {"action": cmd.action, "status": cmd.status}


async def _model(uow: UnitOfWork, name: str) -> tuple[models.ModelState, int]:
    stream = model_stream(name)
    head = (await uow.lock(stream))[stream]
    return head.as_state(models.ModelState), head.version


def _stage(
    uow: UnitOfWork, name: str, version: int, state: models.ModelState, events: list[Event]
) -> models.ModelState:
    for event in events:
        state = models.evolve(state, event)
    uow.stage(model_stream(name), version, events, state)
    return state


async def _stale(uow: UnitOfWork, install_id: str, after_s: float) -> bool:
    """Has the download `install_id` stopped reporting progress (or never had a row)?"""
    fresh = await uow.conn.fetchval(
        """SELECT updated_at > now() - make_interval(secs => $2)
             FROM model_downloads WHERE install_id = $1""",
        install_id,
        after_s,
    )
    return not fresh


async def request_model_install(
    cmd: oc.RequestModelInstall, uow: UnitOfWork
) -> ModelMoved | DomainError:
    """Record the request and open its progress row; a dead download of the same name
    is closed as failed first, so a crash never blocks a name for good."""
    if problem := models.name_problem(cmd.name):
        return Invalid(detail=problem)
    before, version = await _model(uow, cmd.name)
    state, events, abandoned = before, [], ""
    if state.installing and await _stale(uow, state.installing, cmd.stale_after_s):
        abandoned = state.installing
        events = models.abandon(state, "abandoned: the download stopped reporting progress")
        await uow.conn.execute("DELETE FROM model_downloads WHERE install_id = $1", abandoned)
        for event in events:
            state = models.evolve(state, event)
    decided = models.request_install(
        state,
        name=cmd.name,
        kind=cmd.kind,
        install_id=cmd.install_id,
        source=cmd.source,
        overwrite=cmd.overwrite,
    )
    if isinstance(decided, DomainError):
        return decided
    _stage(uow, cmd.name, version, before, [*events, *decided])
    await uow.conn.execute(
        """INSERT INTO model_downloads (install_id, name, kind, bytes_done, updated_at)
           VALUES ($1, $2, $3, 0, now())""",
        cmd.install_id,
        cmd.name,
        cmd.kind,
    )
    return ModelMoved(name=cmd.name, kind=cmd.kind, install_id=cmd.install_id, abandoned=abandoned)


async def finish_model_install(
    cmd: oc.FinishModelInstall, uow: UnitOfWork
) -> ModelMoved | DomainError:
    """The file is in place: record its size and sha256, and close the progress row."""
    state, version = await _model(uow, cmd.name)
    decided = models.finish_install(state, cmd.install_id, cmd.size_bytes, cmd.sha256)
    if isinstance(decided, DomainError):
        return decided
    _stage(uow, cmd.name, version, state, decided)
    await uow.conn.execute("DELETE FROM model_downloads WHERE install_id = $1", cmd.install_id)
    return ModelMoved(name=cmd.name, kind=state.kind, install_id=cmd.install_id)


async def fail_model_install(cmd: oc.FailModelInstall, uow: UnitOfWork) -> ModelMoved | DomainError:
    """The download ended without a file: record why, and close the progress row."""
    state, version = await _model(uow, cmd.name)
    decided = models.fail_install(state, cmd.install_id, cmd.error[:2000])
    if isinstance(decided, DomainError):
        return decided
    _stage(uow, cmd.name, version, state, decided)
    await uow.conn.execute("DELETE FROM model_downloads WHERE install_id = $1", cmd.install_id)
    return ModelMoved(name=cmd.name, kind=state.kind, install_id=cmd.install_id)


async def delete_model(cmd: oc.DeleteModel, uow: UnitOfWork) -> ModelMoved | DomainError:
    """Record a removal (the installer has moved the file aside already)."""
    if models.name_problem(cmd.name):
        return NotFound(detail=f"no model named {cmd.name}")
    state, version = await _model(uow, cmd.name)
    decided = models.delete(state, cmd.name)
    if isinstance(decided, DomainError):
        return decided
    _stage(uow, cmd.name, version, state, decided)
    return ModelMoved(name=cmd.name, kind=state.kind)


OPS_HANDLERS: dict[type[Command], Any] = {
    oc.RecordComfyuiOperation: record_comfyui_operation,
    oc.RequestModelInstall: request_model_install,
    oc.FinishModelInstall: finish_model_install,
    oc.FailModelInstall: fail_model_install,
    oc.DeleteModel: delete_model,
}
