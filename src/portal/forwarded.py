"""The client's address behind a reverse proxy, believed only from RCC_TRUSTED_PROXIES.

Rate limits and the `ip` of every logged sign-in key on the client address. Uvicorn's
own handling believes `X-Forwarded-For` from any loopback peer, and copies whatever
text it carries; here the header counts only when the peer is a listed proxy, and only
entries that parse as IP addresses are taken. Without RCC_TRUSTED_PROXIES (the
default) the header is ignored and the peer is the client."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks; ValueError names the first entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry.strip()!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def forwarded_client(peer: str, header: str, trusted: tuple[Network, ...]) -> str:
    """The client address: walk X-Forwarded-For from the right past trusted proxies; the
    first untrusted hop is the client. A hop that is not an address stops the walk (the
    last trusted hop is then the best we know)."""
    client = _address(peer)
    if client is None or not any(client in net for net in trusted):
        return peer
    for entry in reversed(header.split(",")):
        hop = _address(entry)
        if hop is None:
            break
        client = hop
        if not any(hop in net for net in trusted):
            break
    return str(client)


def _rewrite(scope: Scope, trusted: tuple[Network, ...]) -> None:
    client = scope.get("client")
    if client is None:
        return
    headers = dict(scope["headers"])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    if not forwarded:
        return
    host = forwarded_client(client[0], forwarded, trusted)
    if host == client[0]:
        return
    scope["client"] = (host, 0)
    proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip()
    if proto in ("http", "https") and str(scope["type"]) == "http":
        scope["scheme"] = proto


def trusted_proxies_middleware(trusted: tuple[Network, ...]) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware that rewrites the scope's client (and scheme, from
    X-Forwarded-Proto) for requests that came through a trusted proxy."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if trusted and str(scope["type"]) in ("http", "websocket"):
                _rewrite(scope, trusted)
            await app(scope, receive, send)

        return middleware

    return wrap
