"""Graceful stop: SIGTERM and SIGINT set one event that every worker watches."""

from __future__ import annotations

import asyncio
import signal


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so servers and workers can finish cleanly
    (and atexit handlers, such as stopping the embedded PostgreSQL, still run)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
