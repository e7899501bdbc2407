"""What every page shares: who is looking (with the live balance for the header), the
guards that send strangers to sign-in and non-admins to a 403 page, and `render`.

Pages only ever read; every change is a fetch() from the page's script to the JSON
API, which checks the session's CSRF token (the page carries it in a meta tag)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.response import Template

from portal.identity import identity_of
from portal.pages import reads
from portal.pages.workspaces import Workspace, workspace_of
from rcc.config import Settings
from rcc.domain.billing import state_for
from rcc.policy.wallets import low_balance_rcc


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    """The signed-in person as the header shows them."""

    user_id: str | None  # None: an admin token that belongs to no user
    email: str
    is_admin: bool
    balance_rcc: int | None
    plan: str | None
    csrf_token: str | None
    blocked_reason: str | None = None  # h6: the admin's reason while the account is blocked
    workspace: Workspace | None = None  # h5: the wallet in use (own, or an org's)
    low_balance_rcc: int = 0  # h13: the billing.low_balance_rcc policy for that wallet


class SignInRequired(Exception):
    """Nobody is signed in: the page sends the browser to sign-in, then back here."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


class PageRefused(Exception):
    """An error page with this status and sentence (403 for non-admins, 404, ...)."""

    def __init__(self, status: int, title: str, detail: str, viewer: Viewer | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.viewer = status, title, detail, viewer


def sign_in_url(back_to: str) -> str:
    return f"/app/signin?next={quote(back_to, safe='/')}"


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


async def viewer_of(request: Request[Any, Any, Any]) -> Viewer | None:
    """The signed-in viewer with the balance from the wallet's stream head (never stale),
    or None for a visitor."""
    who = await identity_of(request)
    if who is None:
        return None
    if who.user_id is None:
        return Viewer(
            user_id=None,
            email=f"{who.role} token",
            is_admin=who.is_admin,
            balance_rcc=None,
            plan=None,
            csrf_token=None,
        )
    settings: Settings = request.app.state.settings
    async with _pool(request.app.state).acquire() as conn:
        found = await reads.account(conn, who.user_id)
        workspace = await workspace_of(request, conn, who.user_id)  # h5
        threshold = await low_balance_rcc(  # h13: the policy for the wallet in use
            conn, workspace.org_id or who.user_id, settings.low_balance_rcc, datetime.now(UTC)
        )
    return Viewer(
        user_id=who.user_id,
        email=found.email or who.email,
        is_admin=who.is_admin,
        # The header shows the balance of the wallet in use (h5: an org's, if chosen).
        balance_rcc=found.balance_rcc if workspace.balance_rcc is None else workspace.balance_rcc,
        workspace=workspace,
        plan=found.plan,
        csrf_token=who.csrf_token,
        blocked_reason=found.blocked_reason,
        low_balance_rcc=threshold,
    )


def _here(request: Request[Any, Any, Any]) -> str:
    query = request.scope.get("query_string", b"").decode()
    return request.url.path + (f"?{query}" if query else "")


async def member(request: Request[Any, Any, Any]) -> Viewer:
    """The signed-in user with a wallet; anyone else goes to sign-in first."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise SignInRequired(_here(request))
    if viewer.user_id is None:
        raise PageRefused(403, "Not for tokens", "This page belongs to a user; sign in.", viewer)
    return viewer


async def admin(request: Request[Any, Any, Any]) -> Viewer:
    """An admin (session or admin token); a plain user gets the 403 page."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise SignInRequired(_here(request))
    if not viewer.is_admin:
        raise PageRefused(403, "Admins only", "This page is for RCC administrators.", viewer)
    return viewer


def render(
    request: Request[Any, Any, Any],
    template: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """A page: the template with the header's viewer, balance and low-balance flag."""
    threshold = viewer.low_balance_rcc if viewer is not None else 0
    # Admins' jobs are not charged (ADMIN_BYPASS): a low balance means nothing to them.
    watched = viewer is not None and viewer.balance_rcc is not None and not viewer.is_admin
    # The banner follows the billing state (rcc.domain.billing): low_balance offers to
    # buy, depleted says nothing is left.
    billing = state_for(viewer.balance_rcc or 0, threshold) if viewer is not None else "healthy"
    low = watched and billing != "healthy"
    return Template(
        template_name=template,
        context={
            "viewer": viewer,
            "low_balance": low,
            "billing_state": billing,
            "watch_balance": watched,
            "low_balance_rcc": threshold,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
