"""Fetching a file from a URL an admin typed, without letting that URL reach inside (SSRF).

- https only; plain http only for hosts on the allowlist. No credentials in URLs.
- Every address a host name resolves to must be public (not loopback, private,
  link-local, multicast, reserved, unspecified, shared or otherwise non-global);
  allowlisted hosts are exempt (an internal mirror).
- The check sits in the connector's resolver, so the addresses checked are the very
  addresses connected to: a DNS answer that changes between check and connect (DNS
  rebinding) cannot slip through. Literal IP hosts, which aiohttp does not resolve,
  are checked before each request. Proxies from the environment are ignored.
- Redirects are followed by hand, at most `max_redirects`, and every hop is checked
  again (scheme, host, addresses).
- At most `max_bytes`: a larger Content-Length is refused before the body, and the
  count is kept while streaming for servers that send none.
The body is written to a new file (never an existing one) and hashed as it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable
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
    http_allowlist: frozenset[str] = frozenset()
    max_bytes: int
    max_redirects: int = 5
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0  # silence longer than this fails the download

    def allowlisted(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.http_allowlist


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
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            address = embedded
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


def redact(url: URL) -> str:
    """The URL without credentials, query or fragment (tokens often ride there)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def check_url(raw: str | URL, policy: DownloadPolicy) -> URL:
    """The parsed URL if its form is acceptable; raises Refused otherwise."""
    try:
        url = raw if isinstance(raw, URL) else URL(raw.strip())
    except (ValueError, TypeError) as error:
        raise Refused(f"not a URL: {error}") from None
    if not url.is_absolute() or not url.host:
        raise Refused("the URL needs a scheme and a host")
    if url.user is not None or url.password is not None:
        raise Refused("credentials in the URL are not accepted")
    if url.scheme == "http":
        if not policy.allowlisted(url.host):
            raise Refused(f"plain http is allowed only for allowlisted hosts, not {url.host}")
    elif url.scheme != "https":
        raise Refused(f"only https URLs are fetched, not {url.scheme}:")
    literal = _is_ip(url.host) and not policy.allowlisted(url.host)
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
        if not self._policy.allowlisted(host):
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
    if policy.allowlisted(url.host) or _is_ip(url.host):
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
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as http:
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
                    size, sha256 = await _save(response, dest, policy.max_bytes, progress)
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
    response: aiohttp.ClientResponse, dest: Path, max_bytes: int, progress: Progress | None
) -> tuple[int, str]:
    total = response.content_length
    if total is not None and total > max_bytes:
        raise Failed(f"the file is {total} bytes, more than the limit of {max_bytes}")
    digest = hashlib.sha256()
    done = 0
    pending = bytearray()
    out: BinaryIO = await asyncio.to_thread(dest.open, "xb")  # never an existing file
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            done += len(chunk)
            if done > max_bytes:
                raise Failed(f"the file is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                await asyncio.to_thread(out.write, bytes(pending))
                pending.clear()
            if progress is not None:
                await progress(done, total)
        if total is not None and done != total:
            raise Failed(f"the body ended after {done} of {total} bytes")
        if pending:
            await asyncio.to_thread(out.write, bytes(pending))
        await asyncio.to_thread(_sync, out)
    finally:
        await asyncio.to_thread(out.close)
    return done, digest.hexdigest()


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
