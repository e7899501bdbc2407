"""Several ComfyUI backends: capacity, health and one websocket each.

A backend is in the rotation while its websocket is connected: the socket is both the
health check and the channel for execution messages. When it drops, the backend
leaves the rotation and is reconnected with backoff; once it answers again it returns.
Every reconnect tells the prompts followed on it to check /queue and /history, since
messages sent while the socket was down are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from comfy_adapter.client import BackendError, ComfyClient
from comfy_adapter.protocol import Message, message_prompt_id, parse_binary, parse_message

log = logging.getLogger(__name__)


class Reconnected:
    """A signal to a tracker: the socket was down, messages may have been lost."""


RECONNECTED = Reconnected()
Signal = Message | Reconnected


@dataclass
class Tracker:
    """Where the messages of one prompt go, as they arrive."""

    prompt_id: str
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


class Backend:
    """One ComfyUI server: its client, its slots and the prompts followed on it."""

    def __init__(self, client: ComfyClient, slots: int, tags: frozenset[str] = frozenset()) -> None:
        self.client = client
        self.slots = slots
        self.tags = tags  # what it offers (docs/BACKENDS.md): jobs may require some
        self.draining = False  # finishes what it holds, gets nothing new
        self.removed = False  # out of the pool: dropped once it holds nothing
        self.in_flight: set[str] = set()  # job ids holding a slot
        self.healthy = False
        self.last_error = "not connected yet"
        self.trackers: dict[str, Tracker] = {}
        self.connects = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def url(self) -> str:
        return self.client.base_url

    @property
    def free(self) -> int:
        if not self.healthy or self.draining or self.removed:
            return 0
        return max(self.slots - len(self.in_flight), 0)

    def track(self, prompt_id: str, inbox: asyncio.Queue[Any]) -> None:
        """Send a prompt's messages to `inbox` (register before POST /prompt: runs can
        finish before the answer arrives)."""
        self.trackers[prompt_id] = Tracker(prompt_id, inbox)

    def untrack(self, prompt_id: str) -> None:
        self.trackers.pop(prompt_id, None)

    def deliver(self, message: Message) -> None:
        prompt_id = message_prompt_id(message)
        tracker = self.trackers.get(prompt_id) if prompt_id else None
        if tracker is not None:
            tracker.inbox.put_nowait(message)

    def describe(self) -> dict[str, object]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "in_flight": len(self.in_flight),
            "slots": self.slots,
            "last_error": "" if self.healthy else self.last_error,
            "tags": sorted(self.tags),
            "draining": self.draining,
        }


class BackendPool:
    """The pool's backends (comfy_adapter.pool_sync keeps them in step with the
    `backend-pool` stream): chooses one with free capacity, keeps sockets up."""

    def __init__(
        self,
        clients: list[ComfyClient],
        *,
        slots: int,
        client_id: str,
        reconnect_max_s: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.backends = [Backend(client, slots) for client in clients]
        self.client_id = client_id
        self.reconnect_max_s = reconnect_max_s
        self.on_change = on_change
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: dict[str, asyncio.Task[None]] = {}  # url -> its reconnect loop
        self._started = False

    def get(self, url: str) -> Backend | None:
        return next((b for b in self.backends if b.url == url.rstrip("/")), None)

    def capacity(self) -> dict[str, int]:
        """The backends dispatch may use now and their slots: healthy, not draining, not
        removed. The one place dispatch learns about backends (the slots in use are
        counted across every adapter in SQL: comfy_adapter.leases)."""
        return {
            b.url: b.slots for b in self.backends if b.healthy and not b.draining and not b.removed
        }

    def tags(self) -> dict[str, frozenset[str]]:
        """What each backend offers: a job goes only where its required tags are."""
        return {b.url: b.tags for b in self.backends}

    def waiting_reason(self) -> str:
        """Why a queued job is not running yet, in a sentence."""
        serving = [b for b in self.backends if not b.removed]
        if not serving:
            return (
                "no ComfyUI backend is configured (COMFYUI_URLS is empty "
                "and none was added in /admin/backends)"
            )
        if not any(b.healthy for b in serving):
            details = "; ".join(f"{b.url}: {b.last_error}" for b in serving)
            return f"no ComfyUI backend is reachable ({details})"
        if all(b.draining for b in serving if b.healthy):
            return "every reachable ComfyUI backend is draining (undrain one in /admin/backends)"
        return "waiting for a free ComfyUI backend"

    def start(self) -> None:
        self._started = True
        for backend in self.backends:
            self._connect(backend)

    def _connect(self, backend: Backend) -> None:
        task = asyncio.create_task(self._keep_connected(backend), name=f"ws {backend.url}")
        self._sockets[backend.url] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add(self, backend: Backend) -> None:
        """A backend added at run time: connected at once when the pool runs."""
        self.backends.append(backend)
        if self._started:
            self._connect(backend)
        self.on_change()

    def drop_idle_removed(self) -> list[Backend]:
        """Forget removed backends that hold nothing any more; their sockets close."""
        gone = [b for b in self.backends if b.removed and not b.in_flight and not b.trackers]
        for backend in gone:
            self.backends.remove(backend)
            task = self._sockets.pop(backend.url, None)
            if task is not None:
                task.cancel()
        if gone:
            self.on_change()
        return gone

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def force_reconnect(self, backend: Backend, reason: str) -> None:
        """A request failed to connect: take the backend out until its socket is back."""
        if backend.healthy:
            backend.healthy = False
            backend.last_error = reason
            self.on_change()
        if backend.ws is not None and not backend.ws.closed:
            self._spawn(self._close(backend.ws), f"close {backend.url}")

    @staticmethod
    async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.close()

    async def _keep_connected(self, backend: Backend) -> None:
        delay = 0.05
        while True:
            try:
                async with backend.client.websocket(self.client_id) as ws:
                    backend.ws = ws
                    backend.healthy, backend.last_error = True, ""
                    backend.connects += 1
                    self.on_change()
                    for tracker in list(backend.trackers.values()):
                        tracker.inbox.put_nowait(RECONNECTED)
                    opened = time.monotonic()
                    await self._read(backend, ws)
                    backend.last_error = "websocket closed"
                    if time.monotonic() - opened > 1.0:
                        delay = 0.05  # it was up a while: a quick reconnect is worth a try
            except BackendError as error:
                backend.last_error = str(error) or type(error).__name__
            except aiohttp.ClientError as error:
                backend.last_error = f"{type(error).__name__}: {error}"
            if backend.healthy:
                backend.healthy = False
                self.on_change()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _read(self, backend: Backend, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                try:
                    message = parse_message(frame.data)
                except ValueError as error:  # msgspec errors are ValueErrors
                    log.warning("%s sent an unreadable message: %s", backend.url, error)
                    continue
                backend.deliver(message)
            elif frame.type == aiohttp.WSMsgType.BINARY:
                try:
                    parse_binary(frame.data)  # previews: nothing to keep
                except ValueError as error:
                    log.warning("%s sent an unreadable binary frame: %s", backend.url, error)
            elif frame.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                return
