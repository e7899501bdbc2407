"""The user's own jobs: POST /jobs, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel,
GET /jobs/{id}/logs (also for admins) and the outputs, GET /outputs/{id}/{name}."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import File

from portal.consistency import caught_up
from portal.errors import DATABASE_GONE, ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import (
    Identity,
    client_ip,
    identity_of,
    require_identity,
    signed_in_user,
)
from portal.job_requests import job_to_make
from portal.job_views import created_job_view, page_with_waiting_reasons, with_waiting_reason
from portal.output_files import OUTPUT_HEADERS, media_type, zip_of
from portal.responses import BODY, SIGNED_IN, errors
from portal.schemas import CreateJobBody, JobStatus, JobType
from portal.workflow_check import CHECK_HEADER, check_before_paying
from projections import queries
from projections.job_log import JobLog, job_log
from projections.views import JobView, Page
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.outputs import OutputStore
from rcc.queue_limits import max_queued_jobs
from rcc.service.bus import execute
from rcc.service.commands import CreateJob, MarkJob
from rcc.service.org_reads import job_wallet
from rcc.service.org_spending import org_of


async def me(request: Request[Any, Any, Any]) -> Identity:
    who = await identity_of(request)
    assert who is not None and who.user_id is not None  # the guard made sure
    return who


def _metadata(request: Request[Any, Any, Any], who: Identity) -> dict[str, Any]:
    return {
        "actor": who.email or who.user_id,
        "client_ip": client_ip(request),
        "request_id": request.scope.get("state", {}).get("request_id"),
        "via": who.via,
    }


@post(
    "/jobs", status_code=201, responses=errors(*BODY, *SIGNED_IN, 402, 403, 404, 409, 422, 429, 503)
)
async def create_job(
    data: JSONBody[CreateJobBody],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[JobView]:
    """Reserve the job's cost and create it (201). 402 when the balance is short;
    nothing is written then. Repeating an Idempotency-Key returns the first job."""
    who = await me(request)
    settings: Settings = state.settings
    assert who.user_id is not None
    org_id = org_of(data.wallet, who.user_id)  # h5: `org:<id>` charges an organisation
    if isinstance(org_id, DomainError):
        return domain_response(org_id)  # type: ignore[return-value]
    made = await job_to_make(state, who, data, idempotency_key)  # h4: template or raw
    checked = await check_before_paying(
        state.pool, state.backend_descriptions, made.workflow, made.deferred
    )
    command = CreateJob(
        user_id=who.user_id,
        job_type=made.job_type,
        workflow=made.workflow,
        # The per-user queue depth counts a personal wallet's open jobs; an org's wallet is
        # shared by all its members, so it is not held to one member's limit.
        max_open_jobs=None if who.is_admin or org_id else max_queued_jobs(settings),
        max_workflow_bytes=settings.max_workflow_bytes,
        org_id=org_id,
        template=made.run,
    )
    key = f"jobs:{who.user_id}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=_metadata(request, who), idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    view = created_job_view(
        done.result, user_id=who.user_id, job_type=made.job_type, created_at=done.recorded_at
    )
    view = msgspec.structs.replace(view, template=made.template)
    with contextlib.suppress(*DATABASE_GONE):
        # The job has committed: an outage on this read after it must not turn the
        # answer into a 503, which would tell the client nothing happened.
        view = await with_waiting_reason(state.pool, view)
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    headers[CHECK_HEADER] = checked
    return Response(view, status_code=201, headers=headers)


@get("/jobs", responses=errors(400, *SIGNED_IN))
async def list_jobs(
    state: State,
    request: Request[Any, Any, Any],
    status: FromQuery[JobStatus | None] = None,
    type: FromQuery[JobType | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> Page[JobView]:
    """Your jobs, newest first, filtered by status and type."""
    who = await me(request)
    assert who.user_id is not None
    await caught_up(state.pool, who.user_id, ["jobs"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await queries.jobs_page(
            conn, user_id=who.user_id, status=status, type=type, cursor=cursor, limit=limit
        )
    return await page_with_waiting_reasons(pool, found)


async def _own_job(state: State, who: Identity, job_id: str) -> JobView:
    assert who.user_id is not None
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        wallet = await job_wallet(conn, job_id)  # h5: an org job waits for the org's wallet
    await caught_up(pool, wallet or who.user_id, ["jobs"], state.settings.read_wait_s)
    async with pool.acquire() as conn:
        job = await queries.job(conn, job_id, None if who.is_admin else who.user_id)
    # Someone else's job is indistinguishable from no job at all.
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    return await with_waiting_reason(pool, job)


@get("/jobs/{job_id:str}", responses=errors(400, *SIGNED_IN, 404))
async def get_job(job_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> JobView:
    """One of your jobs (someone else's is a 404). While it is created or queued,
    `waiting_reason` says why it does not run yet (no ComfyUI backend configured, none
    reachable, all busy, or no adapter running), as in every other view of a job."""
    return await _own_job(state, await me(request), job_id)


@get("/outputs/{job_id:str}/{name:str}", responses=errors(400, *SIGNED_IN, 404))
async def job_output(
    job_id: FromPath[str], name: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> File:
    """An output file of one of your jobs. Anyone else, admins included, gets a 404."""
    who = await me(request)
    assert who.user_id is not None
    await caught_up(state.pool, who.user_id, ["jobs"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        job = await queries.job(conn, job_id, who.user_id)
    settings: Settings = state.settings
    found = OutputStore(settings.data_dir / "outputs").find(job_id, name)
    if job is None or found is None or OutputStore.uri(job_id, name) not in job.output_uris:
        raise ApiError(404, "not_found", "no such output")
    # h4: the file's own content type, never sniffed, never able to run in our origin
    return File(
        path=found,
        filename=name,
        content_disposition_type="inline",
        media_type=media_type(name),
        headers=OUTPUT_HEADERS,
    )


@get("/jobs/{job_id:str}/outputs.zip", responses=errors(400, *SIGNED_IN, 404))
async def job_outputs_zip(
    job_id: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """All the outputs of one of your jobs as one zip (h4). Anyone else gets a 404."""
    who = await me(request)
    job = await _own_job(state, who, job_id)
    if job.user_id != who.user_id:
        raise ApiError(404, "not_found", "no such job")
    store = OutputStore(state.settings.data_dir / "outputs")
    names = [uri.rsplit("/", 1)[1] for uri in job.output_uris]
    files = [(n, p) for n in names if (p := store.find(job_id, n)) is not None]
    if not files:
        raise ApiError(404, "not_found", "this job has no outputs")
    headers = {"Content-Disposition": f'attachment; filename="{job_id}-outputs.zip"'}
    return Response(zip_of(files), media_type="application/zip", headers=headers)


@post(
    "/jobs/{job_id:str}/cancel",
    status_code=200,
    responses=errors(400, *SIGNED_IN, 404, 409, 503),
)
async def cancel_job(
    job_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[JobView]:
    """Cancel a job that has not ended; its whole reserve is released. Repeating an
    Idempotency-Key answers like the first cancel (200), not 409."""
    who = await me(request)
    await _own_job(state, who, job_id)
    assert who.user_id is not None
    # The same key space as POST /jobs: one key names one request, whatever its route.
    key = f"jobs:{who.user_id}:{idempotency_key}" if idempotency_key else None
    done = await execute(
        state.pool,
        MarkJob(job_id=job_id, status="cancelled", actor=who.email or who.user_id),
        metadata=_metadata(request, who),
        idempotency_key=key,
    )
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(await _own_job(state, who, job_id), status_code=200)


async def user_or_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a signed-in user, or an admin (an admin token need not belong to a user)."""
    who = await require_identity(connection)
    if who.user_id is None and not who.is_admin:
        raise ApiError(403, "forbidden", "this token is not tied to a user")


@get("/jobs/{job_id:str}/logs", responses=errors(400, *SIGNED_IN, 404))
async def job_logs(job_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> JobLog:
    """The job's execution log, oldest first: its lifecycle, what ComfyUI reported
    (progress, node errors, timing) and what the adapter did (submission, reconnects,
    timeouts). The owner's and every admin's to read; anyone else gets a 404."""
    who = await identity_of(request)
    assert who is not None  # the guard made sure
    if who.user_id is not None:
        await _own_job(state, who, job_id)
    else:
        pool: asyncpg.Pool = state.pool
        async with pool.acquire() as conn:
            if await queries.job(conn, job_id) is None:
                raise ApiError(404, "not_found", "no such job")
    pool = state.pool
    async with pool.acquire() as conn:
        return await job_log(conn, job_id)


router = Router(
    path="/",
    route_handlers=[create_job, list_jobs, get_job, cancel_job, job_output, job_outputs_zip],
    guards=[signed_in_user],
    tags=["jobs"],
)

# Admins read any job's log, also with an admin token that belongs to no user.
logs_router = Router(path="/", route_handlers=[job_logs], guards=[user_or_admin], tags=["jobs"])
