"""Handlers of the GPU pool: every change locks the `backend-pool` stream, decides on
the whole pool (rcc.domain.backends) and stores the folded pool as the stream's state,
which `usable_backends` reads. The routing table is at the bottom."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from rcc.domain import backends as pool
from rcc.domain.errors import DomainError
from rcc.domain.events import BACKEND_POOL_STREAM, Event
from rcc.service import backend_commands as bc
from rcc.service.commands import Command
from rcc.store.unit_of_work import UnitOfWork


async def _pool(uow: UnitOfWork) -> tuple[pool.PoolState, int]:
    head = (await uow.lock(BACKEND_POOL_STREAM))[BACKEND_POOL_STREAM]
    return head.as_state(pool.PoolState), head.version


def _stage(
    uow: UnitOfWork, state: pool.PoolState, version: int, events: list[Event]
) -> pool.PoolState:
    for event in events:
        state = pool.evolve(state, event)
    if events:
        uow.stage(BACKEND_POOL_STREAM, version, events, msgspec.to_builtins(state))
    return state


def _view(state: pool.PoolState, backend_id: str) -> dict[str, Any]:
    return msgspec.to_builtins(state.backends[backend_id])  # type: ignore[no-any-return]


async def add_backend(cmd: bc.AddBackend, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Add a backend to the pool (its URL at most once)."""
    state, version = await _pool(uow)
    events = pool.decide_add(state, cmd.backend_id, cmd.url, cmd.slots, cmd.tags, cmd.actor)
    if isinstance(events, DomainError):
        return events
    return _view(_stage(uow, state, version, events), cmd.backend_id)


async def change_backend(cmd: bc.ChangeBackend, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Change slots or tags, drain or undrain; a change to what already is writes nothing."""
    state, version = await _pool(uow)
    events = pool.decide_change(
        state, cmd.backend_id, cmd.actor, slots=cmd.slots, tags=cmd.tags, draining=cmd.draining
    )
    if isinstance(events, DomainError):
        return events
    return _view(_stage(uow, state, version, events), cmd.backend_id)


async def remove_backend(cmd: bc.RemoveBackend, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """Take a backend out of the pool: it gets no more jobs."""
    state, version = await _pool(uow)
    events = pool.decide_remove(state, cmd.backend_id, cmd.actor)
    if isinstance(events, DomainError):
        return events
    _stage(uow, state, version, events)
    return {"id": cmd.backend_id, "removed": True}


async def seed_backends(cmd: bc.SeedBackends, uow: UnitOfWork) -> dict[str, Any] | DomainError:
    """The environment's list, only into a pool nobody has written yet (an admin's
    removal is never undone by a restart)."""
    state, version = await _pool(uow)
    if version > 0 or not cmd.urls:
        return {"seeded": 0}
    events: list[Event] = []
    for url in cmd.urls:
        slots = min(max(cmd.slots, pool.MIN_SLOTS), pool.MAX_SLOTS)
        decided = pool.decide_add(state, str(uuid.uuid4()), url, slots, (), pool.SEED_ACTOR)
        if isinstance(decided, DomainError):
            return decided
        for event in decided:
            state = pool.evolve(state, event)
        events.extend(decided)
    uow.stage(BACKEND_POOL_STREAM, version, events, msgspec.to_builtins(state))
    return {"seeded": len(events)}


BACKEND_HANDLERS: dict[type[Command], Any] = {
    bc.AddBackend: add_backend,
    bc.ChangeBackend: change_backend,
    bc.RemoveBackend: remove_backend,
    bc.SeedBackends: seed_backends,
}
