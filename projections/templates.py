"""Workflow templates, for GET /templates and the gallery, and which template each job ran.

Rows come from the template events only (`rcc replay` rebuilds them); every version is
kept whole in `template_versions`, so a job's version stays readable after a new version
or an unpublish. `template_jobs` links a job to its template from JobCreated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from projections import paging
from projections.views import Page
from rcc.domain.events import JobCreated, TemplatePublished, TemplateRevised, TemplateUnpublished
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "templates"
TABLES = ("templates", "template_versions", "template_jobs")

_VERSION = """
INSERT INTO template_versions (id, version, spec, actor, published_at)
VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (id, version) DO NOTHING"""
_CURRENT = """
INSERT INTO templates (id, version, published, name, job_type, created_at, updated_at)
VALUES ($1, $2, true, $3, $4, $5, $5)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, published = true,
    name = excluded.name, job_type = excluded.job_type, updated_at = excluded.updated_at"""
_UNPUBLISHED = "UPDATE templates SET published = false, updated_at = $2 WHERE id = $1"
_JOB = """
INSERT INTO template_jobs (job_id, template_id, version) VALUES ($1, $2, $3)
ON CONFLICT (job_id) DO NOTHING"""


@dataclass
class Batch:
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def on_version(
    batch: Batch, event: TemplatePublished | TemplateRevised, record: RecordedEvent
) -> None:
    at = record.recorded_at
    row = (event.template_id, event.version, event.spec, event.actor, at)
    batch.statements.append((_VERSION, row))
    name, job_type = str(event.spec.get("name", "")), str(event.spec.get("job_type", ""))
    batch.statements.append((_CURRENT, (event.template_id, event.version, name, job_type, at)))


def on_unpublished(batch: Batch, event: TemplateUnpublished, record: RecordedEvent) -> None:
    batch.statements.append((_UNPUBLISHED, (event.template_id, record.recorded_at)))


def on_job(batch: Batch, event: JobCreated, record: RecordedEvent) -> None:
    if event.template:
        batch.statements.append((_JOB, (event.job_id, event.template, event.template_version)))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    for sql, params in batch.statements:
        await conn.execute(sql, *params)


HANDLERS: dict[type, Handler[Batch]] = {
    TemplatePublished: on_version,
    TemplateRevised: on_version,
    TemplateUnpublished: on_unpublished,
    JobCreated: on_job,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)


class TemplateVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One published version of a template, whole (its spec as published)."""

    id: str
    version: int
    published: bool
    spec: dict[str, Any]
    updated_at: Any = None


_SELECT = """SELECT t.id, v.version, t.published, v.spec, t.updated_at
               FROM templates t JOIN template_versions v ON v.id = t.id"""


def _version(row: asyncpg.Record) -> TemplateVersion:
    return TemplateVersion(
        id=row["id"],
        version=row["version"],
        published=row["published"],
        spec=row["spec"],
        updated_at=row["updated_at"],
    )


async def template_version(
    conn: asyncpg.Connection, template_id: str, version: int | None = None
) -> TemplateVersion | None:
    """A template's current version (or the one asked), published or not."""
    row = await conn.fetchrow(
        f"""{_SELECT} WHERE t.id = $1 AND v.version = COALESCE($2, t.version)""",
        template_id,
        version,
    )
    return _version(row) if row else None


async def published_page(
    conn: asyncpg.Connection, cursor: str | None, limit: int
) -> Page[TemplateVersion]:
    """Published templates at their current version, most recently changed first."""
    return await paging.page(
        conn,
        select=f"SELECT * FROM ({_SELECT} AND v.version = t.version) AS cur",
        where=paging.Where().add("published"),
        time_column="updated_at",
        cursor=cursor,
        limit=limit,
        build=_version,
        id_type=str,
    )


async def templates_of_jobs(
    conn: asyncpg.Connection, job_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """`{job id: {id, version, name}}` for the jobs among these built from a template."""
    rows = await conn.fetch(
        """SELECT j.job_id, j.template_id, j.version, v.spec->>'name' AS name
             FROM template_jobs j
             LEFT JOIN template_versions v ON v.id = j.template_id AND v.version = j.version
            WHERE j.job_id = ANY($1::text[])""",
        job_ids,
    )
    return {
        r["job_id"]: {"id": r["template_id"], "version": r["version"], "name": r["name"]}
        for r in rows
    }
