"""Model files in `$RCC_DATA_DIR/models/<kind>/<name>`: installs in the background, deletes.

An install: the request is recorded (with its progress row), then a task owned by
the installer downloads to a hidden temporary file in the target directory, hashing as
it goes. Only a complete, hashed file is renamed onto the final name (one atomic
rename: ComfyUI sees the old file or the new one, never part of one), and then the
ModelInstalled event is recorded; if that fails the rename is undone. Any failure
removes the temporary file and records ModelInstallFailed. `stop()` cancels the
downloads in flight, which close as failed.

A delete moves the file aside, records ModelDeleted, then removes it (or moves it
back if the delete is refused). File operations on one name are serialised here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg
import msgspec

from comfy_ops.downloads import (
    Downloaded,
    DownloadPolicy,
    Failed,
    Progress,
    Refused,
    allowlist,
    check_host,
    check_url,
    download,
    redact,
)
from rcc.config import Settings
from rcc.domain import model_files as models
from rcc.domain.errors import Conflict, DomainError, Invalid
from rcc.domain.events import model_stream
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.ops_commands import (
    DeleteModel,
    FailModelInstall,
    FinishModelInstall,
    RequestModelInstall,
)
from rcc.store.event_store import Checkpoint
from rcc.store.heads import read_head

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
STOP_GRACE_S = 10.0


class Install(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    install_id: str
    source: str
    checkpoint: Checkpoint = Checkpoint()  # of the request event, for read-your-writes


def name_from_url(url: str) -> str:
    """The file name an URL points at: its last path segment, percent-decoded."""
    return unquote(url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1])


class ModelInstaller:
    """Owns the download tasks of one portal process."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.root = settings.data_dir / "models"
        self.policy = DownloadPolicy(
            http_allowlist=allowlist(settings.models.http_allowlist),
            max_bytes=settings.models.max_bytes,
            max_seconds=settings.models.max_seconds,
            min_rate_bytes_s=settings.models.min_rate_bytes_s,
            disk_margin_bytes=settings.models.disk_margin_bytes,
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_progress: dict[str, float] = {}

    def path(self, kind: str, name: str) -> Path:
        """Where a model lives; only for a known kind and a safe name."""
        if kind not in models.KINDS or models.name_problem(name):
            raise ValueError(f"not a model path: {kind}/{name}")
        return self.root / kind / name

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def request(
        self,
        *,
        url: str,
        kind: str,
        name: str | None,
        overwrite: bool,
        metadata: dict[str, Any],
    ) -> Install | DomainError:
        """Check the request, record it and start the download in the background.

        Raises Refused for a URL we will not fetch from (checked now, with DNS, and
        again on every connection the download makes)."""
        parsed = check_url(url, self.policy)
        name = name if name is not None else name_from_url(str(parsed))
        if problem := models.name_problem(name):
            return Invalid(detail=problem)
        if kind not in models.KINDS:
            return Invalid(detail=f"kind must be one of {', '.join(models.KINDS)}")
        await check_host(parsed, self.policy)
        if not overwrite and self.path(kind, name).exists():
            return Conflict(
                detail=f"a file {kind}/{name} exists already; send overwrite: true to replace it"
            )
        install = Install(name=name, kind=kind, install_id=uuid.uuid4().hex, source=redact(parsed))
        done = await execute(
            self.pool,
            RequestModelInstall(
                name=name,
                kind=kind,
                install_id=install.install_id,
                source=install.source,
                overwrite=overwrite,
            ),
            metadata=metadata,
        )
        if isinstance(done, DomainError):
            return done
        install = msgspec.structs.replace(install, checkpoint=done.checkpoint)
        if done.result.get("abandoned"):
            self._remove_leftovers(name)
        task = asyncio.create_task(
            self._run(install, str(parsed), metadata), name=f"model-install-{install.install_id}"
        )
        self._tasks[install.install_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(install.install_id, None))
        return install

    async def delete(self, name: str, metadata: dict[str, Any]) -> Done | DomainError:
        """Remove a model file (or the record of a failed install) and record it."""
        async with self._locks[name]:
            state = await self._state(name)
            if models.name_problem(name) or not state.listed:
                return await execute(self.pool, DeleteModel(name=name), metadata=metadata)
            if state.installing:
                return Conflict(detail=f"{name} is being installed; wait for it to end")
            path = self.path(state.kind, name)
            aside = path.with_name(f".{name}.{uuid.uuid4().hex}.deleting")
            moved = state.installed and path.exists()
            if moved:
                os.replace(path, aside)
            try:
                done = await execute(self.pool, DeleteModel(name=name), metadata=metadata)
            except BaseException:
                if moved:
                    os.replace(aside, path)
                raise
            if moved:
                if isinstance(done, DomainError):
                    os.replace(aside, path)
                else:
                    aside.unlink(missing_ok=True)
            return done

    async def stop(self) -> None:
        """Cancel every download in flight and wait until each has closed as failed."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)

    async def _state(self, name: str) -> models.ModelState:
        async with self.pool.acquire() as conn:
            head = await read_head(conn, model_stream(name))
        return head.as_state(models.ModelState)

    async def _run(self, install: Install, url: str, metadata: dict[str, Any]) -> None:
        final = self.path(install.kind, install.name)
        temp = final.with_name(f".{install.name}.{install.install_id}.part")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            got = await download(url, temp, self.policy, self._progress_of(install.install_id))
            async with self._locks[install.name]:
                finishing = asyncio.ensure_future(
                    self._install(install, temp, final, got, metadata)
                )
                try:
                    await asyncio.shield(finishing)
                except asyncio.CancelledError:
                    await finishing  # the file and its event land together, or neither does
                    raise
        except asyncio.CancelledError:
            await self._give_up(install, temp, "cancelled: the portal stopped", metadata)
            raise
        except (Refused, Failed) as error:
            await self._give_up(install, temp, str(error), metadata)
        except Exception as error:
            log.exception("model install %s failed", install.install_id)
            await self._give_up(install, temp, f"internal error: {type(error).__name__}", metadata)
        finally:
            self._last_progress.pop(install.install_id, None)

    async def _install(
        self,
        install: Install,
        temp: Path,
        final: Path,
        got: Downloaded,
        metadata: dict[str, Any],
    ) -> None:
        backup = final.with_name(f".{install.name}.{install.install_id}.old")
        replacing = _swap_in(temp, final, backup)
        try:
            done = await execute(
                self.pool,
                FinishModelInstall(
                    name=install.name,
                    install_id=install.install_id,
                    size_bytes=got.size_bytes,
                    sha256=got.sha256,
                ),
                metadata=metadata,
            )
            if isinstance(done, DomainError):
                raise Failed(f"not recorded: {done.detail}")
        except BaseException:
            _swap_back(final, backup, replacing)
            raise
        _discard(backup)

    async def _give_up(
        self, install: Install, temp: Path, error: str, metadata: dict[str, Any]
    ) -> None:
        _discard(temp)
        try:
            await execute(
                self.pool,
                FailModelInstall(name=install.name, install_id=install.install_id, error=error),
                metadata=metadata,
            )
        except Exception:  # the progress row goes stale; the next request closes it
            log.exception("could not record the failure of model install %s", install.install_id)

    def _progress_of(self, install_id: str) -> Progress:
        async def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - self._last_progress.get(install_id, 0.0) < PROGRESS_EVERY_S:
                return
            self._last_progress[install_id] = now
            async with self.pool.acquire() as conn:
                await conn.execute(
                    """UPDATE model_downloads SET bytes_done = $2, bytes_total = $3,
                              updated_at = now() WHERE install_id = $1""",
                    install_id,
                    done,
                    total,
                )

        return progress

    def _remove_leftovers(self, name: str) -> None:
        """Temporary files of a download whose process died."""
        for kind in models.KINDS:
            for leftover in (self.root / kind).glob(f".{name}.*.part"):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def _swap_in(temp: Path, final: Path, backup: Path) -> bool:
    """Rename the complete download onto its name (atomic). A file it replaces stays
    reachable as `backup` (a hard link) until the install is recorded. True if it did."""
    replacing = final.exists()
    if replacing:
        os.link(final, backup)
    os.replace(temp, final)
    _sync_dir(final.parent)
    return replacing


def _swap_back(final: Path, backup: Path, replaced: bool) -> None:
    """Undo `_swap_in`: the old file back, or no file at all."""
    if replaced:
        os.replace(backup, final)
    else:
        final.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
