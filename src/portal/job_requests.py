"""What a POST /jobs body asks to run: a template with inputs (built on the server), or
a raw workflow, which only the users RCC_RAW_WORKFLOWS allows may send (admins always)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.datastructures import State

from portal.errors import ApiError
from portal.identity import Identity
from portal.schemas import CreateJobBody
from portal.template_jobs import build_template_job
from rcc.config import Settings
from rcc.domain.node_check import Deferred
from rcc.domain.template_runs import TemplateRun
from rcc.domain.workflow import workflow_problem


class JobToMake(msgspec.Struct, frozen=True, kw_only=True):
    job_type: str
    workflow: dict[str, Any]
    run: TemplateRun | None = None
    deferred: Deferred = frozenset()
    template: dict[str, Any] | None = None


def _raw(settings: Settings, who: Identity, data: CreateJobBody) -> JobToMake:
    # A body missing a field is a 400 like every other malformed body (naming the field).
    if data.type is None or data.workflow is None:
        missing = "type" if data.type is None else "workflow"
        raise ApiError(
            400, "invalid_request", f"{missing} is required (or send {{template, inputs}})"
        )
    if settings.templates.raw_workflows == "admins" and not who.is_admin:
        raise ApiError(
            403, "raw_workflows_not_allowed", "run a template: raw workflows are for admins"
        )
    if problem := workflow_problem(data.workflow):
        raise ApiError(422, "invalid_workflow", problem, node_errors={})
    return JobToMake(job_type=data.type, workflow=data.workflow)


async def job_to_make(
    state: State, who: Identity, data: CreateJobBody, idempotency_key: str | None
) -> JobToMake:
    """The job this body asks for, or the 4xx that refuses it (nothing reserved yet)."""
    if data.template is None:
        if data.inputs or data.version is not None:
            raise ApiError(400, "invalid_request", "inputs and version go with a template")
        return _raw(state.settings, who, data)
    if data.type is not None or data.workflow is not None:
        raise ApiError(400, "invalid_request", "send a template or a workflow, not both")
    assert who.user_id is not None
    made = await build_template_job(
        state.pool,
        user_id=who.user_id,
        template_id=data.template,
        version=data.version,
        given=data.inputs,
        idempotency_key=idempotency_key,
    )
    if problem := workflow_problem(made.workflow):
        raise ApiError(422, "invalid_workflow", problem, node_errors={})
    return JobToMake(
        job_type=made.job_type,
        workflow=made.workflow,
        run=made.run,
        deferred=made.deferred,
        template=made.template,
    )
