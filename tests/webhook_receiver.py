"""A real HTTP receiver for outbound webhooks (aiohttp), started by the tests.

It records every request (headers and raw body), answers 500 to the first `fail_first`
attempts at each message, and can hold requests open until `release` is set (to kill
the sender mid-delivery)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from tests.adapter_helpers import wait_until


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    status: int  # what the receiver answered


@dataclass
class Receiver:
    fail_first: int = 0  # answer 500 to this many attempts of each message id
    hold: bool = False  # keep requests open until `release` is set
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _tries: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self.url

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        headers = {k.lower(): v for k, v in request.headers.items()}
        message = headers.get("webhook-id", "")
        self._tries[message] += 1
        status = 500 if self._tries[message] <= self.fail_first else 200
        self.requests.append(Received(headers, body, status))
        self.arrived.set()
        if self.hold:
            await self.release.wait()
        return web.json_response({"ok": status == 200}, status=status)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request's body, each checked by the standardwebhooks library itself
        (a bad signature raises)."""
        hook = Webhook(secret)
        return [hook.verify(r.body, r.headers) for r in self.requests]

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    async def wait_for(self, predicate: Callable[[Receiver], bool], within: float = 20.0) -> None:
        """Wait until `predicate(self)` holds."""
        await wait_until(lambda: predicate(self), within, "the webhook receiver")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until the async `check` answers True (a database row, an API answer)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)
