"""Commands on the GPU pool (admin only, or the adapter seeding an untouched pool)."""

from __future__ import annotations

from rcc.service.commands import Command


class AddBackend(Command, frozen=True, kw_only=True):
    backend_id: str  # chosen by the caller (a uuid), so a retried request names the same one
    url: str
    slots: int
    tags: tuple[str, ...] = ()
    actor: str


class ChangeBackend(Command, frozen=True, kw_only=True):
    backend_id: str
    actor: str
    slots: int | None = None
    tags: tuple[str, ...] | None = None
    draining: bool | None = None


class RemoveBackend(Command, frozen=True, kw_only=True):
    backend_id: str
    actor: str


class SeedBackends(Command, frozen=True, kw_only=True):
    """COMFYUI_URLS on start: added only while the pool has never been written."""

    urls: tuple[str, ...]
    slots: int
