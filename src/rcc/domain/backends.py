"""The GPU pool as data: which ComfyUI backends exist, their slots, tags and draining.

Pure decisions over the pool's state (the `backend-pool` stream's folded head): an
admin's add, change, drain or removal either becomes events or a DomainError. The
environment's COMFYUI_URLS only seeds an untouched pool (docs/BACKENDS.md).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import msgspec

from rcc.domain.errors import Conflict, DomainError, Invalid, NotFound
from rcc.domain.events import (
    BackendAdded,
    BackendChanged,
    BackendDrained,
    BackendRemoved,
    Event,
)

MIN_SLOTS = 1
MAX_SLOTS = 64  # prompts one ComfyUI may hold at once; more only fills its own queue
MAX_TAGS = 16
TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
SEED_ACTOR = "COMFYUI_URLS"


class BackendState(msgspec.Struct, frozen=True, kw_only=True):
    """One backend as the pool knows it."""

    id: str
    url: str
    slots: int
    tags: tuple[str, ...] = ()
    draining: bool = False


class PoolState(msgspec.Struct, frozen=True, kw_only=True):
    """Every backend that has been added and not removed, by id."""

    backends: dict[str, BackendState] = msgspec.field(default_factory=dict)

    def by_url(self, url: str) -> BackendState | None:
        return next((b for b in self.backends.values() if b.url == url), None)


def normalise_url(raw: str) -> str | DomainError:
    """`http(s)://host:port[/path]` without a trailing slash, or why it is not one."""
    url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return Invalid(detail=f"url {raw!r} is not a URL: {error}")
    if parts.scheme not in ("http", "https"):
        return Invalid(detail=f"url {raw!r} must start with http:// or https://")
    if not parts.hostname:
        return Invalid(detail=f"url {raw!r} has no host")
    if port is None:
        return Invalid(detail=f"url {raw!r} must name its port (ComfyUI listens on 8188)")
    if parts.username or parts.password or parts.query or parts.fragment:
        return Invalid(detail=f"url {raw!r} may not carry credentials, a query or a fragment")
    return url


def check_slots(slots: int) -> DomainError | None:
    if not MIN_SLOTS <= slots <= MAX_SLOTS:
        return Invalid(detail=f"slots must be between {MIN_SLOTS} and {MAX_SLOTS}, got {slots}")
    return None


def normalise_tags(tags: list[str] | tuple[str, ...]) -> tuple[str, ...] | DomainError:
    """Lower-case, sorted, each once; each `[a-z0-9][a-z0-9_.-]*` of at most 32."""
    clean = sorted({t.strip().lower() for t in tags})
    if len(clean) > MAX_TAGS:
        return Invalid(detail=f"at most {MAX_TAGS} tags")
    bad = [t for t in clean if not TAG.match(t)]
    if bad:
        return Invalid(detail=f"tags must match [a-z0-9][a-z0-9_.-]{{0,31}}: {bad}")
    return tuple(clean)


def decide_add(
    state: PoolState,
    backend_id: str,
    url: str,
    slots: int,
    tags: list[str] | tuple[str, ...],
    actor: str,
) -> list[Event] | DomainError:
    """A new backend (its id chosen by the caller), unless its URL is already in the pool."""
    clean_url = normalise_url(url)
    if isinstance(clean_url, DomainError):
        return clean_url
    clean_tags = normalise_tags(tags)
    if isinstance(clean_tags, DomainError):
        return clean_tags
    refused = check_slots(slots)
    if refused is not None:
        return refused
    if state.by_url(clean_url) is not None:
        return Conflict(detail=f"{clean_url} is already a backend")
    added = BackendAdded(
        backend_id=backend_id, url=clean_url, slots=slots, tags=clean_tags, actor=actor
    )
    return [added]


def decide_change(
    state: PoolState,
    backend_id: str,
    actor: str,
    *,
    slots: int | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    draining: bool | None = None,
) -> list[Event] | DomainError:
    """Slots and tags in one event, draining in another; nothing that is already so."""
    current = state.backends.get(backend_id)
    if current is None:
        return NotFound(detail=f"no backend {backend_id}")
    events: list[Event] = []
    new_slots = current.slots if slots is None else slots
    refused = check_slots(new_slots)
    if refused is not None:
        return refused
    new_tags = current.tags if tags is None else normalise_tags(tags)
    if isinstance(new_tags, DomainError):
        return new_tags
    if (new_slots, new_tags) != (current.slots, current.tags):
        events.append(
            BackendChanged(backend_id=backend_id, slots=new_slots, tags=new_tags, actor=actor)
        )
    if draining is not None and draining != current.draining:
        events.append(BackendDrained(backend_id=backend_id, draining=draining, actor=actor))
    return events


def decide_remove(state: PoolState, backend_id: str, actor: str) -> list[Event] | DomainError:
    current = state.backends.get(backend_id)
    if current is None:
        return NotFound(detail=f"no backend {backend_id}")
    return [BackendRemoved(backend_id=backend_id, url=current.url, actor=actor)]


def evolve(state: PoolState, event: Event) -> PoolState:
    """The pool after one of its events."""
    backends = dict(state.backends)
    if isinstance(event, BackendAdded):
        backends[event.backend_id] = BackendState(
            id=event.backend_id, url=event.url, slots=event.slots, tags=tuple(event.tags)
        )
    elif isinstance(event, BackendChanged) and event.backend_id in backends:
        backends[event.backend_id] = msgspec.structs.replace(
            backends[event.backend_id], slots=event.slots, tags=tuple(event.tags)
        )
    elif isinstance(event, BackendDrained) and event.backend_id in backends:
        backends[event.backend_id] = msgspec.structs.replace(
            backends[event.backend_id], draining=event.draining
        )
    elif isinstance(event, BackendRemoved):
        backends.pop(event.backend_id, None)
    return PoolState(backends=backends)
