"""Templates: the gallery (/app/templates) and one template's form, generated from its
inputs (/app/templates/{id}): no JSON in sight, the price shown before confirming."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from portal.pages.base import PageRefused, member, render
from portal.routes.templates import template_view
from projections.templates import published_page, template_version


@get("/app/templates")
async def gallery(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await member(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        page = await published_page(conn, None, 200)
    shown = [template_view(t) for t in page.items]
    return render(request, "templates.html", viewer, nav="templates", templates=shown)


@get("/app/templates/{template_id:str}")
async def template_form(
    request: Request[Any, Any, Any], state: State, template_id: FromPath[str]
) -> Template:
    viewer = await member(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await template_version(conn, template_id)
    if found is None or not found.published:
        raise PageRefused(404, "No such template", "It may have been unpublished.", viewer)
    return render(
        request, "template_form.html", viewer, nav="templates", shown=template_view(found)
    )


handlers = [gallery, template_form]
