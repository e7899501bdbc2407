"""A TCP proxy between the service and PostgreSQL that cuts connections when told to,
including while a COMMIT is in flight. Run as a process of its own:

    python -m tests.tcp_proxy --upstream-unix /path/.s.PGSQL.5432

It prints `listening <port> <control port>` once ready. Clients connect to <port>; the
proxy opens one upstream connection per client and relays bytes both ways, reading the
client's side as PostgreSQL protocol messages so it can recognise a simple-protocol
query that ends with COMMIT. The control port takes one command per line and answers
one JSON line:

- `chaos P EVERY_S`: from now on each COMMIT is cut with probability P, in one of three
  ways chosen at random (half of them `during`): `before` (the COMMIT is dropped, both
  sides closed: it cannot have committed), `during` (the COMMIT is forwarded and the
  server's reply dropped: it committed, the client cannot know) and `after` (the reply
  is relayed, then the connection cut). Besides, every connection is cut at random
  instants, on average every EVERY_S seconds (0: never).
- `calm`: no more cuts.   - `cut`: cut every connection now.   - `stats`: the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
from collections import Counter
from dataclasses import dataclass, field

# Untyped messages a client may send first (RFC: protocol codes of the startup phase).
SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
# How a COMMIT is cut, and how often each way: "during" (committed, reply lost) is the
# case that matters most, so it gets half.
CUT_WAYS = ("before", "during", "during", "after")


def is_commit(kind: bytes, body: bytes) -> bool:
    """A simple query whose last statement is COMMIT (the unit of work's `...; COMMIT`,
    asyncpg's `COMMIT;`)."""
    if kind != b"Q":
        return False
    text = body.rstrip(b"\0").strip().rstrip(b";").strip().upper()
    return text.endswith(b"COMMIT")


@dataclass(eq=False)  # hashed by identity: kept in a set
class Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cut_on_reply: str | None = None  # "during" or "after": what to do with the next reply

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # a reset, not a polite FIN after queued data


@dataclass
class Proxy:
    upstream_unix: str
    rng: random.Random = field(default_factory=random.Random)
    commit_p: float = 0.0
    cut_every_s: float = 0.0
    links: set[Link] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream_unix)
        except OSError:
            self.counts["upstream_refused"] += 1
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self.links.add(link)
        self.counts["connections"] += 1
        try:
            await asyncio.gather(
                self._client_to_server(reader, link), self._server_to_client(up_reader, link)
            )
        finally:
            link.close()
            self.links.discard(link)

    async def _client_to_server(self, reader: asyncio.StreamReader, link: Link) -> None:
        buffer = b""
        started = False
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                buffer += chunk
                while True:
                    message, buffer, started = _next_message(buffer, started)
                    if message is None:
                        break
                    if not self._forward(message, link):
                        return
                await link.server.drain()
        link.close()

    def _forward(self, message: tuple[bytes, bytes, bytes], link: Link) -> bool:
        """Forward one client message, or cut here; False once the link is cut."""
        kind, body, raw = message
        if is_commit(kind, body):
            self.counts["commits_seen"] += 1
            if self.rng.random() < self.commit_p:
                way = self.rng.choice(CUT_WAYS)
                self.counts[f"cut_{way}_commit"] += 1
                if way == "before":
                    link.close()
                    return False
                link.cut_on_reply = way
        link.server.write(raw)
        return True

    async def _server_to_client(self, reader: asyncio.StreamReader, link: Link) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                if link.cut_on_reply == "during":
                    link.close()  # the server answered COMMIT; the client never hears it
                    return
                link.client.write(chunk)
                await link.client.drain()
                if link.cut_on_reply == "after":
                    link.close()
                    return
        link.close()

    def cut_all(self) -> int:
        links = list(self.links)
        for link in links:
            link.close()
        self.counts["full_cuts"] += 1
        self.counts["connections_cut"] += len(links)
        return len(links)

    async def random_cuts(self) -> None:
        while True:
            if self.cut_every_s > 0:
                await asyncio.sleep(self.rng.uniform(0, 2 * self.cut_every_s))
                if self.cut_every_s > 0:
                    self.cut_all()
            else:
                await asyncio.sleep(0.05)

    async def serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while line := await reader.readline():
            words = line.decode().split()
            if words[:1] == ["chaos"]:
                self.commit_p, self.cut_every_s = float(words[1]), float(words[2])
                answer: object = "ok"
            elif words[:1] == ["calm"]:
                self.commit_p, self.cut_every_s = 0.0, 0.0
                answer = "ok"
            elif words[:1] == ["cut"]:
                answer = self.cut_all()
            elif words[:1] == ["stats"]:
                answer = dict(self.counts)
            else:
                answer = {"error": f"unknown command {line!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        writer.close()


def _next_message(
    buffer: bytes, started: bool
) -> tuple[tuple[bytes, bytes, bytes] | None, bytes, bool]:
    """The next complete client message (kind, body, raw bytes), the rest of the buffer
    and whether the startup phase is over."""
    if not started:  # untyped: length, then a protocol code
        if len(buffer) < 8:
            return None, buffer, started
        length, code = struct.unpack("!II", buffer[:8])
        if len(buffer) < length:
            return None, buffer, started
        raw, rest = buffer[:length], buffer[length:]
        done = code not in (SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST)
        return (b"", raw[8:], raw), rest, done
    if len(buffer) < 5:
        return None, buffer, started
    (length,) = struct.unpack("!I", buffer[1:5])
    if len(buffer) < 1 + length:
        return None, buffer, started
    raw, rest = buffer[: 1 + length], buffer[1 + length :]
    return (raw[:1], raw[5:], raw), rest, started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-unix", required=True, help="PostgreSQL's socket file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    proxy = Proxy(args.upstream_unix, random.Random(args.seed))
    server = await asyncio.start_server(proxy.serve_client, "127.0.0.1", 0)
    control = await asyncio.start_server(proxy.serve_control, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    control_port = control.sockets[0].getsockname()[1]
    print(f"listening {port} {control_port}", flush=True)
    cutter = asyncio.create_task(proxy.random_cuts())
    try:
        async with server, control:
            await asyncio.gather(server.serve_forever(), control.serve_forever())
    finally:
        cutter.cancel()


if __name__ == "__main__":
    asyncio.run(main())
