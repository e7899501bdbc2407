"""Admin operations: the ComfyUI container and the model files.

POST /admin/comfyui/start|stop|restart, GET /admin/comfyui/status; GET /admin/models,
POST /admin/models/install, DELETE /admin/models/{name}. Behind the admin guard, like
every /admin route (service tokens may read the status and the model list). Every
container operation and every model change is an event, so the operations log shows
who did it, from where, and how it ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import msgspec
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from comfy_ops.container import ComfyuiContainer, ContainerStatus, EngineFailure, Outcome
from comfy_ops.downloads import Refused
from comfy_ops.model_installer import ModelInstaller
from portal.errors import ApiError, domain_response
from portal.identity import admin_or_service_reader, client_ip, identity_of
from portal.responses import BODY, SIGNED_IN, errors, no_content
from portal.routes.auth import _limit as rate_limit
from portal.schemas import Strict
from projections.models import ModelView, list_models
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.projector.wait import wait_for
from rcc.service.bus import execute
from rcc.service.ops_commands import RecordComfyuiOperation
from rcc.store.event_store import Checkpoint

ModelKind = Literal[
    "checkpoints", "loras", "vae", "controlnet", "upscale_models", "embeddings", "clip", "unet"
]
Action = Literal["start", "stop", "restart"]
ENGINE = errors(*SIGNED_IN, 409, 502, 503)  # the engine's answers, passed on

log = logging.getLogger(__name__)


class InstallBody(Strict, frozen=True, kw_only=True):
    url: str
    kind: ModelKind
    name: str | None = None  # default: the last segment of the URL's path
    overwrite: bool = False


class InstallAccepted(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    install_id: str
    source: str
    status: str = "downloading"


class ModelList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ModelView]


class OperationDone(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    status: str
    detail: str
    container: ContainerStatus


async def _metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    who = await identity_of(request)
    assert who is not None  # the guard made sure
    return {
        "actor": who.email or f"token:{who.role}",
        "client_ip": client_ip(request),
        "request_id": request.scope.get("state", {}).get("request_id"),
        "via": who.via,
    }


def _container(state: State) -> ComfyuiContainer:
    settings: Settings = state.settings
    return ComfyuiContainer(settings.comfyui, settings.data_dir)


def _ops_lock(state: State) -> asyncio.Lock:
    """One container operation at a time in this process."""
    if "comfyui_lock" not in state:
        state.comfyui_lock = asyncio.Lock()
    lock: asyncio.Lock = state.comfyui_lock
    return lock


def installer(state: State) -> ModelInstaller:
    """The app's model installer, made on first use; `operations_lifespan` stops it."""
    if "model_installer" not in state:
        state.model_installer = ModelInstaller(state.pool, state.settings)
    found: ModelInstaller = state.model_installer
    return found


@asynccontextmanager
async def operations_lifespan(app: Litestar) -> AsyncIterator[None]:
    """On shutdown, downloads in flight are cancelled and recorded as failed."""
    try:
        yield
    finally:
        if "model_installer" in app.state:
            await app.state.model_installer.stop()


async def _operate(state: State, request: Request[Any, Any, Any], action: Action) -> OperationDone:
    """Run a container operation and record it, whether it worked or not."""
    container = _container(state)
    metadata = await _metadata(request)
    operation = {"start": container.start, "stop": container.stop, "restart": container.restart}
    outcome: Outcome | EngineFailure
    async with _ops_lock(state):
        try:
            outcome = await operation[action]()
        except EngineFailure as error:
            outcome = error
        except Exception as error:  # still recorded, as a failure
            log.exception("comfyui %s failed", action)
            outcome = EngineFailure(500, "internal_error", f"{type(error).__name__}: {error}")
    settings: Settings = state.settings
    record = RecordComfyuiOperation(
        action=action,
        status="failed" if isinstance(outcome, EngineFailure) else "ok",
        detail=outcome.detail,
        container=settings.comfyui.name,
        image=settings.comfyui.image,
    )
    done = await execute(state.pool, record, metadata=metadata)
    for _ in range(2):  # a conflict only when two processes open the stream at once
        if not isinstance(done, DomainError):
            break
        done = await execute(state.pool, record, metadata=metadata)
    if isinstance(done, DomainError):
        raise ApiError(409, "conflict", f"the {action} was not recorded: {done.detail}")
    await wait_for(state.pool, done.checkpoint, ["ops_log"], settings.read_wait_s)
    if isinstance(outcome, EngineFailure):
        raise ApiError(outcome.status, outcome.code, outcome.detail, action=action)
    return OperationDone(
        action=action, status="ok", detail=outcome.detail, container=outcome.container
    )


@post("/comfyui/start", status_code=200, responses=ENGINE)
async def comfyui_start(state: State, request: Request[Any, Any, Any]) -> OperationDone:
    """Create (or reuse) and start the ComfyUI container."""
    return await _operate(state, request, "start")


@post("/comfyui/stop", status_code=200, responses=ENGINE)
async def comfyui_stop(state: State, request: Request[Any, Any, Any]) -> OperationDone:
    """Stop the ComfyUI container (nothing to do when it is not running)."""
    return await _operate(state, request, "stop")


@post("/comfyui/restart", status_code=200, responses=ENGINE)
async def comfyui_restart(state: State, request: Request[Any, Any, Any]) -> OperationDone:
    """Stop the container if it runs, then start it as `start` does."""
    return await _operate(state, request, "restart")


@get("/comfyui/status", responses=ENGINE)
async def comfyui_status(state: State) -> ContainerStatus:
    """The container as the engine sees it and, when running, ComfyUI's own stats and
    queue (`comfyui.reachable: false` with the error when ComfyUI does not answer)."""
    try:
        return await _container(state).status()
    except EngineFailure as error:
        raise ApiError(error.status, error.code, error.detail) from None


@get("/models", responses=errors(400, *SIGNED_IN))
async def list_model_files(state: State, kind: FromQuery[ModelKind | None] = None) -> ModelList:
    """Model files: installed ones with size, sha256 and date; downloads in flight with
    bytes done and total; failed installs with the reason."""
    async with state.pool.acquire() as conn:
        return ModelList(items=await list_models(conn, kind))


@post("/models/install", status_code=202, responses=errors(*BODY, *SIGNED_IN, 409, 422, 429))
async def install_model(
    data: JSONBody[InstallBody], state: State, request: Request[Any, Any, Any]
) -> Response[InstallAccepted]:
    """Download a model file in the background (202); follow it on GET /admin/models."""
    settings: Settings = state.settings
    await rate_limit(state, request, "model_install", settings.rate_limits.model_install_per_min)
    try:
        install = await installer(state).request(
            url=data.url,
            kind=data.kind,
            name=data.name,
            overwrite=data.overwrite,
            metadata=await _metadata(request),
        )
    except Refused as refused:
        raise ApiError(422, "url_refused", str(refused)) from None
    if isinstance(install, DomainError):
        return domain_response(install)  # type: ignore[return-value]
    await _models_caught_up(state, install.checkpoint)
    accepted = InstallAccepted(
        name=install.name, kind=install.kind, install_id=install.install_id, source=install.source
    )
    return Response(accepted, status_code=202)


@delete(
    "/models/{name:str}",
    status_code=204,
    responses={**errors(400, *SIGNED_IN, 404, 409, 422), **no_content("Removed")},
)
async def delete_model(
    name: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> Response[None]:
    """Remove an installed model file (or the record of a failed install)."""
    done = await installer(state).delete(name, await _metadata(request))
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    await _models_caught_up(state, done.checkpoint)
    return Response(None, status_code=204)


async def _models_caught_up(state: State, checkpoint: Checkpoint) -> None:
    """Read-your-writes for the model list and the operations log."""
    settings: Settings = state.settings
    await wait_for(state.pool, checkpoint, ["models", "ops_log"], settings.read_wait_s)


router = Router(
    path="/admin",
    route_handlers=[
        comfyui_start,
        comfyui_stop,
        comfyui_restart,
        comfyui_status,
        list_model_files,
        install_model,
        delete_model,
    ],
    guards=[admin_or_service_reader],
    tags=["admin", "operations"],
)
