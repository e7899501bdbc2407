"""Workflow templates: GET /templates, GET /templates/{id} for every signed-in user;
POST /admin/templates, PUT /admin/templates/{id} (a new version) and
DELETE /admin/templates/{id} (unpublish) for admins. Admin commands honour
Idempotency-Key and answer once the read model shows their change."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_only, identity_of, signed_in_user
from portal.responses import BODY, SIGNED_IN, errors
from projections.templates import TemplateVersion, published_page, template_version
from projections.views import Page
from rcc.domain.errors import DomainError
from rcc.domain.metered import estimate_rcc, input_factors
from rcc.domain.templates import UPLOAD_KINDS, TemplateSpec, resolve_values
from rcc.projector.wait import wait_for
from rcc.service.bus import execute
from rcc.service.commands import Command
from rcc.service.template_commands import PublishTemplate, ReviseTemplate, UnpublishTemplate


class TemplateView(msgspec.Struct, frozen=True, kw_only=True):
    """A template as users see it: its inputs and price rule (not its workflow), and
    the price its default inputs would hold."""

    id: str
    version: int
    name: str
    description: str
    job_type: str
    cover: str | None
    inputs: list[dict[str, Any]]
    price: dict[str, Any]
    estimate_rcc: int | None  # for the default inputs; null when one has no default
    published: bool
    requires_tags: list[str] = []  # backend tags its jobs need (h15)


class TemplatePublishedView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    published: bool


def template_view(found: TemplateVersion) -> TemplateView:
    """The user's view of one template version."""
    spec = msgspec.convert(found.spec, TemplateSpec)
    defaults = {i.name: i.default for i in spec.inputs if i.default is not None}
    known = input_factors(spec.price) <= set(defaults)
    inputs = [
        {k: v for k, v in msgspec.to_builtins(i).items() if k not in ("node", "field")}
        for i in spec.inputs
    ]
    return TemplateView(
        id=found.id,
        version=found.version,
        name=spec.name,
        description=spec.description,
        job_type=spec.job_type,
        cover=spec.cover,
        inputs=inputs,
        price=msgspec.to_builtins(spec.price),
        estimate_rcc=estimate_rcc(spec.price, defaults) if known else None,
        published=found.published,
        requires_tags=spec.requires_tags,
    )


@get("/templates", responses=errors(400, *SIGNED_IN))
async def list_templates(
    state: State,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> Page[TemplateView]:
    """Published templates, most recently changed first."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await published_page(conn, cursor, limit)
    return Page(items=[template_view(t) for t in found.items], next_cursor=found.next_cursor)


@get("/templates/{template_id:str}", responses=errors(400, *SIGNED_IN, 404))
async def get_template(
    template_id: FromPath[str], state: State, version: FromQuery[int | None] = None
) -> TemplateView:
    """A published template at its current version (or the one asked)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await template_version(conn, template_id, version)
    if found is None or not found.published:
        raise ApiError(404, "not_found", "no such published template")
    return template_view(found)


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    estimate_rcc: int


@post(
    "/templates/{template_id:str}/estimate",
    status_code=200,
    responses=errors(*BODY, *SIGNED_IN, 404, 422),
)
async def estimate_template(
    template_id: FromPath[str], data: JSONBody[dict[str, Any]], state: State
) -> Estimate:
    """What a job from this template with these inputs would hold (nothing is written);
    422 names each input that cannot be used. Upload inputs are not needed here."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await template_version(conn, template_id, None)
    if found is None or not found.published:
        raise ApiError(404, "not_found", "no such published template")
    spec = msgspec.convert(found.spec, TemplateSpec)
    priced = [i for i in spec.inputs if i.kind not in UPLOAD_KINDS]
    given = {k: v for k, v in data.items() if k in {i.name for i in priced}}
    values, problems = resolve_values(priced, given, seed_source=0)
    if problems:
        detail = "; ".join(f"{n} {why}" for n, why in sorted(problems.items()))
        raise ApiError(422, "invalid_inputs", detail, inputs=problems)
    return Estimate(estimate_rcc=estimate_rcc(spec.price, values))


async def _run(
    state: State, request: Request[Any, Any, Any], command: Command, key: str | None, status: int
) -> Response[TemplatePublishedView]:
    scoped = f"templates:{key}" if key else None
    done = await execute(state.pool, command, idempotency_key=scoped)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    await wait_for(state.pool, done.checkpoint, ["templates"], state.settings.read_wait_s)
    return Response(msgspec.convert(done.result, TemplatePublishedView), status_code=status)


async def _actor(request: Request[Any, Any, Any]) -> str:
    who = await identity_of(request)
    assert who is not None  # the guard made sure
    return who.email or who.user_id or f"token:{who.role}"


@post("/templates", status_code=201, responses=errors(*BODY, *SIGNED_IN, 409, 422))
async def publish_template(
    data: JSONBody[dict[str, Any]],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[TemplatePublishedView]:
    """Publish a template (version 1): its workflow, inputs bound to node fields (each
    checked to exist), and price rule. 422 names what is wrong."""
    command = PublishTemplate(template_id=str(uuid.uuid4()), spec=data, actor=await _actor(request))
    if idempotency_key:  # a retry must not mint a second id: derive it from the key
        command = msgspec.structs.replace(
            command, template_id=str(uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key))
        )
    return await _run(state, request, command, idempotency_key, 201)


@put("/templates/{template_id:str}", responses=errors(*BODY, *SIGNED_IN, 404, 409, 422))
async def revise_template(
    template_id: FromPath[str],
    data: JSONBody[dict[str, Any]],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[TemplatePublishedView]:
    """Publish a new version (the same body as POST); past jobs keep their version."""
    command = ReviseTemplate(template_id=template_id, spec=data, actor=await _actor(request))
    return await _run(state, request, command, idempotency_key, 200)


@delete(
    "/templates/{template_id:str}", status_code=200, responses=errors(400, *SIGNED_IN, 404, 409)
)
async def unpublish_template(
    template_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[TemplatePublishedView]:
    """Unpublish: no new jobs from it; its past jobs and versions are unharmed."""
    command = UnpublishTemplate(template_id=template_id, actor=await _actor(request))
    return await _run(state, request, command, idempotency_key, 200)


router = Router(
    path="/",
    route_handlers=[list_templates, get_template, estimate_template],
    guards=[signed_in_user],
    tags=["templates"],
)
admin_router = Router(
    path="/admin",
    route_handlers=[publish_template, revise_template, unpublish_template],
    guards=[admin_only],
    tags=["templates"],
)
