"""The HTTP server the portal runs in: uvicorn with bounded request heads.

Uvicorn's httptools protocol keeps reading a request's headers for as long and as far
as the client likes (10 connections x 40 MB of headers took a process from 85 MB to
550 MB), and waits forever for headers that arrive a byte at a time. The protocol here
answers 431 once a request's head passes RCC_MAX_HEADER_BYTES, and 408 (then closes)
when a connection has not finished sending a head within RCC_HEADER_TIMEOUT_S of
opening or of starting its next request. X-Forwarded-For is left to the app
(portal.forwarded), so uvicorn's own proxy handling is off."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rcc.config import Settings


def _error_response(status: int, reason: str, code: str, detail: str) -> bytes:
    body = msgspec.json.encode({"error": code, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol with a size and a time limit on each request head."""

    max_header_bytes = 32 * 1024
    header_timeout_s = 10

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # until the first request's headers are complete
        self._head_timer: asyncio.TimerHandle | None = None
        self._drained = -1  # bytes read and dropped after a refusal; -1: not refused

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._drained >= 0:
            self._drain(len(data))
            return
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Counted after parsing, so a chunk that finishes the head (and carries body
        # bytes) is never held against it; httptools has kept at most one chunk more.
        self._head_bytes += len(data)
        if self._head_bytes > self.max_header_bytes:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                f"the request line and headers may take at most {self.max_header_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head, self._head_bytes = True, 0
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and not self.headers:  # an idle connection: just close it
            self._cancel_head_timer()
            self.transport.close()
            return
        detail = f"the request headers took longer than {self.header_timeout_s} s"
        self._refuse(408, "Request Timeout", "request_timeout", detail)

    def _refuse(self, status: int, reason: str, code: str, detail: str) -> None:
        """Answer, then close gracefully: closing at once with unread bytes would send a
        reset that can destroy the answer before the client reads it. So the write side
        is shut and what still arrives is read and dropped, for at most a second or as
        much again as a head may take."""
        self._cancel_head_timer()
        self._in_head = False
        self.transport.write(_error_response(status, reason, code, detail))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._drained = 0
        self.loop.call_later(1.0, self.transport.close)

    def _drain(self, size: int) -> None:
        self._drained += size
        if self._drained > self.max_header_bytes:
            self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with this deployment's limits."""
    return type(
        "HttpToolsProtocolWithLimits",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout_s": settings.header_timeout_s,
        },
    )


def server_config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for serving the portal app."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=bounded_protocol(settings),
        proxy_headers=False,  # the app believes only RCC_TRUSTED_PROXIES (portal.forwarded)
        log_config=None,  # our JSON lines on the root logger
        access_log=False,  # the portal writes its own access line, with the request id
    )
