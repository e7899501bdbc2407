"""Graceful stop: SIGTERM and SIGINT set one event that every worker watches."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so servers and workers can finish cleanly
    (and atexit handlers, such as stopping the embedded PostgreSQL, still run)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until_stopped(server: uvicorn.Server, stop: asyncio.Event | None = None) -> None:
    """Run uvicorn until `stop` is set (by default: until SIGTERM or SIGINT).

    uvicorn's own handling would re-raise SIGTERM after shutdown and kill the process
    before atexit has stopped the embedded PostgreSQL, so we take the signals instead.
    """
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
    stop = stop or stop_event_on_signals()

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await server.serve()
    finally:
        watcher.cancel()
