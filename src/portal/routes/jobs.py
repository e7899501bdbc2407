"""The user's own jobs: POST /jobs, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from portal.consistency import caught_up
from portal.errors import ApiError, domain_response
from portal.identity import Identity, client_ip, identity_of, signed_in_user
from portal.schemas import CreateJobBody, JobStatus, JobType
from projections import queries
from projections.views import JobView, Page
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.domain.workflow import workflow_problem
from rcc.service.bus import execute
from rcc.service.commands import CreateJob, MarkJob

MAX_KEY_LENGTH = 200


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


@post("/jobs", status_code=201)
async def create_job(
    data: JSONBody[CreateJobBody],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(name="Idempotency-Key", required=False, max_length=MAX_KEY_LENGTH),
    ] = None,
) -> Response[JobView]:
    """Reserve the job's cost and create it (201). 402 when the balance is short;
    nothing is written then. Repeating an Idempotency-Key returns the first job."""
    who = await me(request)
    if problem := workflow_problem(data.workflow):
        raise ApiError(422, "invalid_workflow", problem)
    settings: Settings = state.settings
    assert who.user_id is not None
    command = CreateJob(
        user_id=who.user_id,
        job_type=data.type,
        workflow=data.workflow,
        max_open_jobs=None if who.is_admin else settings.max_running_jobs_per_user,
    )
    key = f"jobs:{who.user_id}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=_metadata(request, who), idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    view = JobView(
        id=str(done.result["job_id"]),
        user_id=who.user_id,
        type=data.type,
        cost_rcc=int(done.result["cost_rcc"]),
        status="created",
        duration_ms=None,
        output_uris=[],
        error=None,
        metadata={"bypass": bool(done.result["bypass"])},
        created_at=done.recorded_at or datetime.now(UTC),
        started_at=None,
        ended_at=None,
    )
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return Response(view, status_code=201, headers=headers)


@get("/jobs")
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
        return await queries.jobs_page(
            conn, user_id=who.user_id, status=status, type=type, cursor=cursor, limit=limit
        )


async def _own_job(state: State, who: Identity, job_id: str) -> JobView:
    assert who.user_id is not None
    await caught_up(state.pool, who.user_id, ["jobs"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        job = await queries.job(conn, job_id, None if who.is_admin else who.user_id)
    # Someone else's job is indistinguishable from no job at all.
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    return job


@get("/jobs/{job_id:str}")
async def get_job(job_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> JobView:
    """One of your jobs (someone else's is a 404)."""
    return await _own_job(state, await me(request), job_id)


@post("/jobs/{job_id:str}/cancel", status_code=200)
async def cancel_job(
    job_id: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> Response[JobView]:
    """Cancel a job that has not ended; its whole reserve is released."""
    who = await me(request)
    await _own_job(state, who, job_id)
    done = await execute(
        state.pool,
        MarkJob(job_id=job_id, status="cancelled", actor=who.email or who.user_id),
        metadata=_metadata(request, who),
    )
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(await _own_job(state, who, job_id), status_code=200)


router = Router(
    path="/",
    route_handlers=[create_job, list_jobs, get_job, cancel_job],
    guards=[signed_in_user],
    tags=["jobs"],
)
