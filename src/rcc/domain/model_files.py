"""Model files (`model-<name>` streams): which names may exist and how an install moves.

A name is one file, unique across kinds (DELETE /admin/models/{name} names no kind).
An install is requested, then either installed or failed; an installed file stays
installed while a replacement downloads, and a failed replacement leaves it in place.
"""

from __future__ import annotations

import re

import msgspec

from rcc.domain.errors import Conflict, DomainError, Invalid, NotFound
from rcc.domain.events import (
    Event,
    ModelDeleted,
    ModelInstalled,
    ModelInstallFailed,
    ModelInstallRequested,
)

KINDS = (
    "checkpoints",
    "loras",
    "vae",
    "controlnet",
    "upscale_models",
    "embeddings",
    "clip",
    "unet",
)
EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
MAX_NAME = 200
# A plain file name: no directories, no leading dot (hidden), no odd characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ModelState(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    kind: str = ""
    installed: bool = False
    sha256: str = ""
    size_bytes: int = 0
    installing: str = ""  # the install id of a download in progress
    listed: bool = False  # shown by GET /admin/models (installed, installing or failed)


def evolve(state: ModelState, event: Event) -> ModelState:
    """Fold one event into the model's state."""
    match event:
        case ModelInstallRequested():
            return msgspec.structs.replace(
                state, name=event.name, kind=event.kind, installing=event.install_id, listed=True
            )
        case ModelInstalled():
            return msgspec.structs.replace(
                state,
                installed=True,
                sha256=event.sha256,
                size_bytes=event.size_bytes,
                installing="",
            )
        case ModelInstallFailed():
            return msgspec.structs.replace(state, installing="")
        case ModelDeleted():
            return ModelState(name=state.name)
    return state


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a model file name, or None when it can."""
    if not name or len(name) > MAX_NAME:
        return f"a model name has 1 to {MAX_NAME} characters"
    if not _NAME.match(name) or ".." in name:
        return (
            f"{name!r} is not a plain file name (letters, digits and . _ + -, "
            "not starting with a dot, no directories)"
        )
    if not name.lower().endswith(EXTENSIONS):
        return f"{name!r} must end with one of {', '.join(EXTENSIONS)}"
    return None


def request_install(
    state: ModelState,
    *,
    name: str,
    kind: str,
    install_id: str,
    source: str,
    overwrite: bool,
) -> list[Event] | DomainError:
    """Start an install unless one is running or the name is taken (without overwrite)."""
    if problem := name_problem(name):
        return Invalid(detail=problem)
    if kind not in KINDS:
        return Invalid(detail=f"kind must be one of {', '.join(KINDS)}")
    if state.installing:
        return Conflict(detail=f"{name} is being installed already")
    if state.installed and not overwrite:
        return Conflict(detail=f"{name} is installed; send overwrite: true to replace it")
    if state.installed and state.kind != kind:
        return Conflict(detail=f"{name} is installed as {state.kind}; delete it first")
    return [
        ModelInstallRequested(
            name=name, kind=kind, install_id=install_id, source=source, overwrite=overwrite
        )
    ]


def abandon(state: ModelState, reason: str) -> list[Event]:
    """Close the install in progress whose downloader stopped answering."""
    if not state.installing:
        return []
    return [
        ModelInstallFailed(
            name=state.name, kind=state.kind, install_id=state.installing, error=reason
        )
    ]


def _current(state: ModelState, install_id: str) -> DomainError | None:
    if not state.name:
        return NotFound(detail="no such model")
    if state.installing != install_id:
        return Conflict(detail=f"install {install_id} of {state.name} is not in progress")
    return None


def finish_install(
    state: ModelState, install_id: str, size_bytes: int, sha256: str
) -> list[Event] | DomainError:
    """The download `install_id` is complete (only the one in progress may finish)."""
    if refused := _current(state, install_id):
        return refused
    return [
        ModelInstalled(
            name=state.name,
            kind=state.kind,
            install_id=install_id,
            size_bytes=size_bytes,
            sha256=sha256,
            replaced=state.installed,
        )
    ]


def fail_install(state: ModelState, install_id: str, error: str) -> list[Event] | DomainError:
    """The download `install_id` ended without a file; an installed one stays."""
    if refused := _current(state, install_id):
        return refused
    return [
        ModelInstallFailed(name=state.name, kind=state.kind, install_id=install_id, error=error)
    ]


def delete(state: ModelState, name: str) -> list[Event] | DomainError:
    """Remove an installed file, or the record of a failed install (not while a
    download of the same name runs)."""
    if not state.listed:
        return NotFound(detail=f"no model named {name}")
    if state.installing:
        return Conflict(detail=f"{name} is being installed; wait for it to end")
    return [
        ModelDeleted(name=name, kind=state.kind, sha256=state.sha256, was_installed=state.installed)
    ]
