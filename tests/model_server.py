"""A tiny HTTP/1.1 file server for model-install tests: each path is a behaviour
(a body, a chunked body, a redirect, a connection dropped mid-body, a body that waits
on a gate, a body that trickles), written by hand so a test controls every byte and every close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def body(data: bytes) -> Behaviour:
    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", {"Content-Length": str(len(data)), "Connection": "close"}))
        writer.write(data)
        await writer.drain()

    return send


def chunked(data: bytes, size: int = 16_384) -> Behaviour:
    """No Content-Length: the size is only known by counting."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", {"Transfer-Encoding": "chunked", "Connection": "close"}))
        for start in range(0, len(data), size):
            part = data[start : start + size]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return send


def dropped(declared: int, sent: bytes) -> Behaviour:
    """Promise `declared` bytes, send fewer, then close the connection."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", {"Content-Length": str(declared), "Connection": "close"}))
        writer.write(sent)
        await writer.drain()

    return send


def redirect(location: str, status: str = "302 Found") -> Behaviour:
    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(_head(status, {"Location": location, "Content-Length": "0"}))
        await writer.drain()

    return send


def gated(data: bytes, gate: asyncio.Event) -> Behaviour:
    """Send the first half, wait for the gate, then the rest."""

    async def send(writer: asyncio.StreamWriter) -> None:
        half = len(data) // 2
        writer.write(_head("200 OK", {"Content-Length": str(len(data)), "Connection": "close"}))
        writer.write(data[:half])
        await writer.drain()
        await gate.wait()
        writer.write(data[half:])
        await writer.drain()

    return send


def trickle(data: bytes, every_s: float) -> Behaviour:
    """A byte at a time, `every_s` apart: each inside any read timeout, the whole for ever."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", {"Content-Length": str(len(data)), "Connection": "close"}))
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)

    return send


class FileServer:
    """Serves `routes` on 127.0.0.1; `hits` lists every path asked for, in order."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.hits: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split(" ")
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            self.hits.append(path)
            behaviour = self.routes.get(path)
            if behaviour is None:
                writer.write(_head("404 Not Found", {"Content-Length": "0"}))
            else:
                await behaviour(writer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
