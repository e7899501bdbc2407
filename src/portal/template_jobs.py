"""POST /jobs from a template: the template's workflow with the user's inputs bound in,
its price from the template's rule, and the upload files it needs — all decided before
anything is reserved. Bad inputs are a 422 naming each input; an upload that is not the
caller's (or no longer kept) is a 404, as if it never existed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from portal.errors import ApiError
from projections.templates import template_version
from rcc.domain import templates as t
from rcc.domain.metered import estimate_rcc
from rcc.domain.node_check import Deferred
from rcc.domain.template_runs import TemplateRun
from rcc.domain.uploads import backend_file_name


class TemplateJob(msgspec.Struct, frozen=True, kw_only=True):
    job_type: str
    workflow: dict[str, Any]
    run: TemplateRun
    deferred: Deferred  # upload fields: the file reaches the backend just before the prompt
    template: dict[str, Any]  # {id, version, name} for the job view


def _seed_source(idempotency_key: str | None, user_id: str) -> int | None:
    """A retried request (same key) binds the same random seed, so it is the same
    command and its key answers the first job."""
    if not idempotency_key:
        return None
    digest = hashlib.sha256(f"{user_id}:{idempotency_key}".encode()).digest()
    return int.from_bytes(digest[:8]) % t.SEED_MAX


async def _upload_names(
    conn: asyncpg.Connection, spec: t.TemplateSpec, values: dict[str, Any], user_id: str
) -> tuple[dict[str, str], dict[str, str]]:
    names: dict[str, str] = {}
    errors: dict[str, str] = {}
    for item in spec.inputs:
        if item.kind not in t.UPLOAD_KINDS or item.name not in values:
            continue
        row = await conn.fetchrow(
            """SELECT kind, content_type FROM uploads
                WHERE id = $1 AND user_id = $2 AND expires_at > $3""",
            str(values[item.name]),
            user_id,
            datetime.now(UTC),
        )
        if row is None:
            raise ApiError(404, "not_found", f"input {item.name!r}: no such upload")
        if row["kind"] != item.kind:
            errors[item.name] = f"must be an {item.kind} upload, got an {row['kind']}"
        else:
            names[item.name] = backend_file_name(str(values[item.name]), row["content_type"])
    return names, errors


def _refuse(errors: dict[str, str]) -> ApiError:
    detail = "; ".join(f"{name} {why}" for name, why in sorted(errors.items()))
    return ApiError(422, "invalid_inputs", detail, inputs=errors)


async def build_template_job(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    template_id: str,
    version: int | None,
    given: dict[str, Any],
    idempotency_key: str | None,
) -> TemplateJob:
    """The job a template and these inputs make, or an ApiError (404, 422)."""
    async with pool.acquire() as conn:
        found = await template_version(conn, template_id, version)
        if found is None or not found.published:
            raise ApiError(404, "not_found", "no such published template (or version)")
        spec = msgspec.convert(found.spec, t.TemplateSpec)
        values, errors = t.resolve_values(
            spec.inputs, given, _seed_source(idempotency_key, user_id)
        )
        if errors:
            raise _refuse(errors)
        names, errors = await _upload_names(conn, spec, values, user_id)
    if errors:
        raise _refuse(errors)
    bound = t.bind(spec, values, names)
    deferred = frozenset((i.node, i.field) for i in spec.inputs if i.kind in t.UPLOAD_KINDS)
    run = TemplateRun(
        template_id=template_id,
        version=found.version,
        price_rcc=estimate_rcc(spec.price, values),
        values=values,
        price_rule=msgspec.to_builtins(spec.price),
        required_tags=tuple(sorted(set(spec.requires_tags))),
    )
    return TemplateJob(
        job_type=spec.job_type,
        workflow=bound.workflow,
        run=run,
        deferred=deferred,
        template={"id": template_id, "version": found.version, "name": spec.name},
    )
