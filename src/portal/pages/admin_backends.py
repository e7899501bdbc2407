"""The admin page of the GPU pool (/app/admin/backends): every backend with its URL,
tags, slots, slots in use, health and GPU memory (the adapter's last /system_stats),
and forms to add, drain, undrain and remove. The page is rendered from the read model;
its script (static/admin_backends.js) sends changes to the JSON API with the session's
CSRF header, like every other admin form."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template

from portal.pages.base import admin, render
from projections.backends import list_backends
from rcc.domain.backends import MAX_SLOTS, MIN_SLOTS

SHOWN = 200  # the page lists at most this many backends (the API pages further)


def gib(n: int | None) -> str:
    """Bytes as GiB with one decimal, or a dash."""
    return "—" if n is None else f"{n / 2**30:.1f} GiB"


@get("/app/admin/backends")
async def backends(request: Request[Any, Any, Any], state: State) -> Template:
    """The pool, with its forms."""
    viewer = await admin(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        items, more = await list_backends(conn, after=None, limit=SHOWN)
    return render(
        request,
        "admin/backends.html",
        viewer,
        nav="admin",
        sub="backends",
        backends=items,
        more=more is not None,
        gib=gib,
        min_slots=MIN_SLOTS,
        max_slots=MAX_SLOTS,
    )


handlers = [backends]
