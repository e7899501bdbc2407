"""How the pages plug into the app: the Jinja environment, /static, the security
headers every page carries, and error pages instead of JSON for page routes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from portal.pages.base import PageRefused, SignInRequired, sign_in_url
from portal.pages.format import FILTERS
from projections.paging import BadCursor

log = logging.getLogger("portal.pages")
HERE = Path(__file__).resolve().parent.parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"

# Pages load nothing from elsewhere: scripts and styles only from here, no inline
# script, no framing. Output previews are served by this origin too.
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value=(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'"
        ),
    ),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    # Pages show balances and carry the CSRF token: never from a shared cache.
    ResponseHeader(name="Cache-Control", value="no-store"),
]


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the render, loudly, in tests
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    version = _static_version()
    env.globals["static"] = lambda name: f"/static/{name}?v={version}"
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(_environment()))


def static_files() -> Router:
    """/static: the one stylesheet and the one script (versioned URLs, cached an hour)."""
    return create_static_files_router(
        path="/static",
        directories=[STATIC],
        cache_control=CacheControlHeader(max_age=3600, public=True),
        include_in_schema=False,
    )


def _error_page(
    request: Request[Any, Any, Any], status: int, title: str, detail: str, viewer: Any = None
) -> Template:
    return Template(
        template_name="error.html",
        context={
            "viewer": viewer,
            "low_balance": False,
            "billing_state": "healthy",
            "watch_balance": False,
            "low_balance_rcc": 0,
            "path": request.url.path,
            "status": status,
            "title": title,
            "detail": detail,
            "request_id": request.scope.get("state", {}).get("request_id", ""),
        },
        status_code=status,
        headers={h.name: h.value or "" for h in SECURITY_HEADERS},  # error pages too
    )


def _signed_out(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    return Redirect(sign_in_url(exc.back_to), status_code=303)


def _refused(request: Request[Any, Any, Any], exc: PageRefused) -> Response[Any]:
    return _error_page(request, exc.status, exc.title, exc.detail, exc.viewer)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 401:  # e.g. a revoked bearer token: sign in afresh
        return Redirect(sign_in_url(request.url.path), status_code=303)
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 429: "Slow down"}
    title = titles.get(exc.status_code, "Something went wrong")
    return _error_page(request, exc.status_code, title, str(exc.detail))


def _bad_cursor(request: Request[Any, Any, Any], exc: BadCursor) -> Response[Any]:
    detail = "That page link is out of date; start again from the first page."
    return _error_page(request, 400, "Bad page link", detail)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.exception("page failed", extra={"request_id": request_id, "path": request.url.path})
    detail = "Something went wrong on our side. Try again in a moment."
    return _error_page(request, 500, "Something went wrong", detail)


def page_router(handlers: list[ControllerRouterHandler]) -> Router:
    """The page routes: out of the OpenAPI schema, with HTML error pages."""
    return Router(
        path="/",
        route_handlers=handlers,
        include_in_schema=False,
        response_headers=SECURITY_HEADERS,
        exception_handlers={
            SignInRequired: _signed_out,
            PageRefused: _refused,
            HTTPException: _http,
            BadCursor: _bad_cursor,
            Exception: _unexpected,
        },
    )
