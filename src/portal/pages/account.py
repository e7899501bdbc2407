"""/ (where sign-ins land), sign in and sign up."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Redirect

from portal.pages.base import render, viewer_of
from portal.pages.reads import first_run
from portal.passwords import MIN_LENGTH
from rcc.config import Settings


def safe_next(target: str | None, default: str = "/app/run") -> str:
    """Only a path on this site: never `//elsewhere` or `https://elsewhere`.

    Browsers drop tabs and newlines from URLs and read a backslash as `/`, so `/%09/evil`
    is `//evil` to them: a target with any control character, space or backslash is
    refused outright rather than cleaned."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if any(c <= " " or c in "\\\x7f" for c in target):
        return default
    if urlsplit(target).netloc or urlsplit(target).scheme:
        return default
    return target


@get("/")
async def home(request: Request[Any, Any, Any]) -> Redirect:
    """Admins land on their dashboard, users on Run, visitors on sign-in; a user with
    nothing to spend and no job yet lands on Buy, welcomed (the first run)."""
    viewer = await viewer_of(request)
    if viewer is None:
        return Redirect("/app/signin", status_code=303)
    if viewer.is_admin:
        return Redirect("/app/admin", status_code=303)
    if viewer.user_id is not None and not viewer.balance_rcc:
        async with request.app.state.pool.acquire() as conn:
            if await first_run(conn, viewer.user_id):
                return Redirect("/app/buy?welcome=1", status_code=303)
    return Redirect("/app/run", status_code=303)


@get("/app/signin")
async def sign_in(
    request: Request[Any, Any, Any],
    next_: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Response[Any]:
    return await _auth_page(request, "signin.html", safe_next(next_))


@get("/app/signup")
async def sign_up(
    request: Request[Any, Any, Any],
    next_: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Response[Any]:
    return await _auth_page(request, "signup.html", safe_next(next_, default="/"))


async def _auth_page(request: Request[Any, Any, Any], template: str, back_to: str) -> Response[Any]:
    if await viewer_of(request) is not None:
        return Redirect(back_to, status_code=303)
    settings: Settings = request.app.state.settings
    return render(
        request,
        template,
        None,
        next_url=back_to,
        gitlab=bool(settings.gitlab_client_id),
        signup_grant=settings.signup_grant_rcc,
        min_password=MIN_LENGTH,
    )


handlers = [home, sign_in, sign_up]
