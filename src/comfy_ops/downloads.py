"""Fetching a file from a URL an admin typed, without letting that URL reach inside (SSRF).

- https only; plain http only for host:port pairs on the allowlist (the port too: an
  allowlisted mirror must not become a way to the service's own ports). No credentials.
- Every address a host name resolves to must be public (not loopback, private,
  link-local, multicast, reserved, unspecified, shared or otherwise non-global), also
  the IPv4 address inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 address;
  allowlisted host:port pairs are exempt (an internal mirror).
- The check sits in the connector's resolver, so the addresses checked are the very
  addresses connected to: a DNS answer that changes between check and connect (DNS
  rebinding) cannot slip through. Literal IP hosts, which aiohttp does not resolve,
  are checked before each request. Proxies from the environment are ignored.
- Redirects are followed by hand, at most `max_redirects`, and every hop is checked
  again (scheme, host, addresses).
- At most `max_bytes`: a larger Content-Length is refused before the body, and the
  count is kept while streaming for servers that send none. The disk must keep
  `disk_margin_bytes` free: a Content-Length that would eat into them is refused before
  the body, and every write checks again.
- At most `max_seconds` in all, and never slower than `min_rate_bytes_s` on average
  once the first `rate_grace_s` have passed: a server dripping a byte now and then
  (each one inside the read timeout) cannot hold a download open for hours.
- A redirect to any other scheme (file:, ftp:, data:...) is refused like a bad URL.
The body is written to a new file (never an existing one) and hashed as it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 1 << 20
WRITE_BATCH = 8 << 20
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Progress = Callable[[int, int | None], Awaitable[None]]  # (bytes so far, total if known)


class Refused(Exception):
    """The URL (or a redirect) points where we do not fetch from."""


class Failed(Exception):
    """The transfer itself failed: HTTP status, connection, size."""


class DownloadPolicy(msgspec.Struct, frozen=True, kw_only=True):
    http_allowlist: frozenset[tuple[str, int]] = frozenset()  # (host, port): allowlist()
    max_bytes: int
    max_redirects: int = 5
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0  # silence longer than this fails the download
    max_seconds: float = 4 * 3600.0
    min_rate_bytes_s: int = 32 << 10
    rate_grace_s: float = 30.0  # slow starts (TLS, a cold mirror) are not held against it
    disk_margin_bytes: int = 1 << 30

    def allowlisted(self, host: str, port: int | None) -> bool:
        return (host.lower().rstrip("."), port or 0) in self.http_allowlist


def allowlist(entries: Iterable[str]) -> frozenset[tuple[str, int]]:
    """(host, port) pairs from `host:port` entries; a bare host stands for its default
    ports (80 for http, 443 for https), never for any port. IPv6 as `[::1]:8080`."""
    pairs: set[tuple[str, int]] = set()
    for entry in entries:
        url = URL(f"//{entry.strip()}")  # yarl parses host, [v6] and port as in a URL
        if not url.host:
            raise ValueError(f"not a host or host:port: {entry!r}")
        host = url.host.lower().rstrip(".")
        ports = (url.explicit_port,) if url.explicit_port else (80, 443)
        pairs.update((host, port) for port in ports)
    return frozenset(pairs)


class Downloaded(msgspec.Struct, frozen=True, kw_only=True):
    size_bytes: int
    sha256: str
    url: str  # where the body finally came from (after redirects), redacted


def address_problem(text: str) -> str | None:
    """Why an address must not be fetched from, or None for a public one."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text!r} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            if problem := address_problem(str(inner)):
                return f"{address} embeds {inner}: {problem}"
    for flag, what in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(address, flag):
            return f"{address} is a {what} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a packet to `address` ends up at: IPv4-mapped, NAT64 (64:ff9b::/96),
    6to4 (2002::/16, the gateway's address) and Teredo (server and client)."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [inner for inner in found if inner is not None]


def redact(url: URL) -> str:
    """The URL without credentials, query or fragment (tokens often ride there)."""
    if not url.is_absolute():  # file:///x, data:... have no authority to strip
        return str(url.with_query(None).with_fragment(None))
    return str(url.with_user(None).with_query(None).with_fragment(None))


def check_url(raw: str | URL, policy: DownloadPolicy) -> URL:
    """The parsed URL if its form is acceptable; raises Refused otherwise."""
    try:
        url = raw if isinstance(raw, URL) else URL(raw.strip())
    except (ValueError, TypeError) as error:
        raise Refused(f"not a URL: {error}") from None
    if url.scheme not in ("http", "https"):
        raise Refused(f"only https URLs are fetched, not {url.scheme or 'a relative URL'}:")
    if not url.is_absolute() or not url.host:
        raise Refused("the URL needs a scheme and a host")
    if url.user is not None or url.password is not None:
        raise Refused("credentials in the URL are not accepted")
    if url.scheme == "http" and not policy.allowlisted(url.host, url.port):
        raise Refused(
            f"plain http is allowed only for allowlisted hosts and ports, not {url.host}:{url.port}"
        )
    literal = _is_ip(url.host) and not policy.allowlisted(url.host, url.port)
    if literal and (problem := address_problem(url.host)):
        raise Refused(f"{url.host}: {problem}")
    return url


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class CheckingResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses the host if any address is internal."""

    def __init__(self, policy: DownloadPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self._policy.allowlisted(host, port):
            for info in found:
                if problem := address_problem(info["host"]):
                    raise Refused(f"{host} resolves to {problem}")
        return found

    async def close(self) -> None:
        await self._inner.close()


async def check_host(url: URL, policy: DownloadPolicy) -> None:
    """Resolve the URL's host now and refuse it if any address is internal: the early
    answer for a request. The download checks again, on the addresses it connects to."""
    assert url.host is not None
    if policy.allowlisted(url.host, url.port) or _is_ip(url.host):
        return
    try:
        await CheckingResolver(policy).resolve(url.host, url.port or 443, socket.AF_UNSPEC)
    except OSError as error:
        raise Refused(f"{url.host} does not resolve: {error}") from None


async def download(
    raw_url: str, dest: Path, policy: DownloadPolicy, progress: Progress | None = None
) -> Downloaded:
    """Fetch `raw_url` into the new file `dest`; returns its size and sha256.

    Raises Refused (policy) or Failed (transfer). On any error `dest` may hold part of
    the body: the caller removes it.
    """
    url = check_url(raw_url, policy)
    connector = aiohttp.TCPConnector(
        resolver=CheckingResolver(policy), use_dns_cache=False, force_close=True
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=policy.connect_timeout_s, sock_read=policy.read_timeout_s
    )
    try:
        async with (
            asyncio.timeout(policy.max_seconds),
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as http,
        ):
            return await _follow(http, url, dest, policy, progress)
    except TimeoutError:  # the overall limit; the read and connect timeouts are Failed already
        raise Failed(f"the download took longer than {policy.max_seconds:g} s") from None


async def _follow(
    http: aiohttp.ClientSession,
    url: URL,
    dest: Path,
    policy: DownloadPolicy,
    progress: Progress | None,
) -> Downloaded:
    """GET `url`, following redirects by hand, each hop checked; the body into `dest`."""
    for hop in range(policy.max_redirects + 1):
        try:
            async with http.get(
                url, allow_redirects=False, headers={"Accept-Encoding": "identity"}
            ) as response:
                if response.status in REDIRECTS:
                    url = _next_hop(url, response, policy)
                    continue
                if response.status != 200:
                    raise Failed(f"{url.host} answered HTTP {response.status}")
                size, sha256 = await _save(response, dest, policy, progress)
                return Downloaded(size_bytes=size, sha256=sha256, url=redact(url))
        except Refused as refused:  # by the resolver, on connecting
            if hop == 0:
                raise
            raise Refused(f"redirect to {redact(url)} refused: {refused}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise Failed(f"download from {url.host} failed: {_describe(error)}") from None
    raise Refused(f"more than {policy.max_redirects} redirects")


def _next_hop(url: URL, response: aiohttp.ClientResponse, policy: DownloadPolicy) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise Failed(f"{url.host} answered HTTP {response.status} without a Location")
    try:
        target = url.join(URL(location))
    except ValueError as error:
        raise Refused(f"bad redirect target {location!r}: {error}") from None
    try:
        return check_url(target, policy)
    except Refused as refused:
        raise Refused(f"redirect to {redact(target)} refused: {refused}") from None


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


async def _save(
    response: aiohttp.ClientResponse, dest: Path, policy: DownloadPolicy, progress: Progress | None
) -> tuple[int, str]:
    total = response.content_length
    if total is not None and total > policy.max_bytes:
        raise Failed(f"the file is {total} bytes, more than the limit of {policy.max_bytes}")
    _check_disk(dest, total or 0, policy.disk_margin_bytes)
    digest = hashlib.sha256()
    done = 0
    pending = bytearray()
    started = asyncio.get_running_loop().time()
    out: BinaryIO = await asyncio.to_thread(dest.open, "xb")  # never an existing file
    try:
        while chunk := await _next_chunk(response, policy, started, done):
            done += len(chunk)
            if done > policy.max_bytes:
                raise Failed(f"the file is larger than the limit of {policy.max_bytes} bytes")
            digest.update(chunk)
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                await _write(out, dest, pending, total, policy)
            if progress is not None:
                await progress(done, total)
        if total is not None and done != total:
            raise Failed(f"the body ended after {done} of {total} bytes")
        if pending:
            await _write(out, dest, pending, total, policy)
        await asyncio.to_thread(_sync, out)
    finally:
        await asyncio.to_thread(out.close)
    return done, digest.hexdigest()


async def _next_chunk(
    response: aiohttp.ClientResponse, policy: DownloadPolicy, started: float, done: int
) -> bytes:
    """The next piece of the body (b"" at its end), or Failed once the average rate since
    `started` has fallen below the minimum: the piece must come before the moment `done`
    bytes would be too few."""
    deadline = (
        started + policy.rate_grace_s + done / policy.min_rate_bytes_s
        if policy.min_rate_bytes_s > 0
        else None  # no minimum rate
    )
    try:
        async with asyncio.timeout_at(deadline):
            return await response.content.read(CHUNK)
    except TimeoutError:
        elapsed = asyncio.get_running_loop().time() - started
        raise Failed(
            f"too slow: {done} bytes in {elapsed:.0f} s, "
            f"under the minimum of {policy.min_rate_bytes_s} bytes/s"
        ) from None


async def _write(
    out: BinaryIO, dest: Path, pending: bytearray, total: int | None, policy: DownloadPolicy
) -> None:
    """Write what is pending, after checking it still leaves the margin free (a body
    without Content-Length, or a disk that others fill meanwhile)."""
    if total is None:
        _check_disk(dest, len(pending), policy.disk_margin_bytes)
    await asyncio.to_thread(out.write, bytes(pending))
    pending.clear()


def _check_disk(dest: Path, coming: int, margin: int) -> None:
    free = shutil.disk_usage(dest.parent).free
    if coming + margin > free:
        raise Failed(
            f"not enough free disk: {coming} bytes to write, {free} free, "
            f"and {margin} must stay free (RCC_MODEL_DISK_MARGIN_BYTES)"
        )


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
