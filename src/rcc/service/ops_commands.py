"""Operations commands: the ComfyUI container and the model files (admin only)."""

from __future__ import annotations

from rcc.service.commands import Command


class RecordComfyuiOperation(Command, frozen=True, kw_only=True):
    """A container operation has been tried; record what it did, failed or not."""

    action: str
    status: str
    detail: str = ""
    container: str = ""
    image: str = ""


class RequestModelInstall(Command, frozen=True, kw_only=True):
    name: str
    kind: str
    install_id: str
    source: str
    overwrite: bool = False
    # A download whose progress row is older than this is taken as dead (its process
    # stopped without closing it) and is closed as failed before the new one starts.
    stale_after_s: float = 120.0


class FinishModelInstall(Command, frozen=True, kw_only=True):
    name: str
    install_id: str
    size_bytes: int
    sha256: str


class FailModelInstall(Command, frozen=True, kw_only=True):
    name: str
    install_id: str
    error: str


class DeleteModel(Command, frozen=True, kw_only=True):
    name: str
