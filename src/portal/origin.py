"""Guard for the endpoints that set a session: a browser request must come from our origin.

Browsers send `Origin` on every cross-site POST; a sign-in from another site's page
would sign the victim into an account the attacker controls (login CSRF). Our own pages
send our origin; API clients (curl, scripts) send none and pass."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from portal.errors import ApiError
from rcc.config import Settings


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(connection: ASGIConnection[Any, Any, Any, Any]) -> set[str]:
    """RCC_PUBLIC_URL's origin, and the origin the request itself was sent to."""
    settings: Settings = connection.app.state.settings
    own = {_origin_of(settings.public_url)}
    host = connection.headers.get("host", "")
    if host:
        own.add(f"{connection.url.scheme}://{host}".lower())
    return own


async def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: refuse (403 `cross_origin`) a request whose Origin is another site's."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    if origin.lower() not in allowed_origins(connection):
        raise ApiError(403, "cross_origin", f"requests from {origin[:100]!r} may not sign in here")
