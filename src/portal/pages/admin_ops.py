"""Admin pages for the machine: model files and the ComfyUI container.

Both are thin: the page's script reads and drives the JSON API (GET /admin/models,
POST /admin/models/install, DELETE /admin/models/{name}; GET /admin/comfyui/status,
POST /admin/comfyui/start|stop|restart) and polls it while something is under way."""

from __future__ import annotations

from typing import Any, get_args

from litestar import Request, get
from litestar.response import Template

from portal.pages.base import admin, render
from portal.routes.operations import ModelKind

MODEL_KINDS = get_args(ModelKind)  # ComfyUI's model folders the installer accepts


@get("/app/admin/models")
async def models(request: Request[Any, Any, Any]) -> Template:
    viewer = await admin(request)
    return render(
        request, "admin/models.html", viewer, nav="admin", sub="models", kinds=MODEL_KINDS
    )


@get("/app/admin/comfyui")
async def comfyui(request: Request[Any, Any, Any]) -> Template:
    viewer = await admin(request)
    return render(request, "admin/comfyui.html", viewer, nav="admin", sub="comfyui")


handlers = [models, comfyui]
