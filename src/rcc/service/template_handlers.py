"""Template and upload handlers: each decides on its own stream, under its head lock."""

from __future__ import annotations

from typing import Any

import msgspec

from rcc.domain import templates
from rcc.domain.errors import Conflict, DomainError, Invalid, NotFound
from rcc.domain.events import (
    Event,
    TemplatePublished,
    TemplateRevised,
    TemplateUnpublished,
    UploadStored,
    template_stream,
    upload_stream,
)
from rcc.service import template_commands as tc
from rcc.service.commands import Command
from rcc.store.unit_of_work import UnitOfWork


class TemplateMoved(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    published: bool


def checked_spec(raw: dict[str, Any]) -> templates.TemplateSpec | DomainError:
    """The spec decoded strictly and checked: every input bound to a node field that
    exists, bounds that make sense, a price rule over numeric inputs."""
    try:
        spec = msgspec.convert(raw, templates.TemplateSpec)
    except msgspec.ValidationError as error:
        return Invalid(detail=f"template: {error}")
    if problems := templates.spec_problems(spec):
        return Invalid(detail="; ".join(problems))
    return spec


async def _write(uow: UnitOfWork, template_id: str, decide: Any) -> TemplateMoved | DomainError:
    stream = template_stream(template_id)
    head = (await uow.lock(stream))[stream]
    state = head.as_state(templates.TemplateState)
    decided: Event | DomainError = decide(state)
    if isinstance(decided, DomainError):
        return decided
    after = templates.evolve(state, decided)
    uow.stage(stream, head.version, [decided], after)
    return TemplateMoved(id=template_id, version=after.version, published=after.published)


async def publish_template(cmd: tc.PublishTemplate, uow: UnitOfWork) -> Any:
    """Publish a new template as version 1 (409 when the id is taken)."""
    spec = checked_spec(cmd.spec)
    if isinstance(spec, DomainError):
        return spec

    def decide(state: templates.TemplateState) -> Event | DomainError:
        if state.version:
            return Conflict(detail=f"template {cmd.template_id} exists")
        return TemplatePublished(
            template_id=cmd.template_id,
            version=1,
            spec=msgspec.to_builtins(spec),
            actor=cmd.actor,
        )

    return await _write(uow, cmd.template_id, decide)


async def revise_template(cmd: tc.ReviseTemplate, uow: UnitOfWork) -> Any:
    """Publish a new version of a template (it is published again if it was not)."""
    spec = checked_spec(cmd.spec)
    if isinstance(spec, DomainError):
        return spec

    def decide(state: templates.TemplateState) -> Event | DomainError:
        if not state.version:
            return NotFound(detail="no such template")
        return TemplateRevised(
            template_id=cmd.template_id,
            version=state.version + 1,
            spec=msgspec.to_builtins(spec),
            actor=cmd.actor,
        )

    return await _write(uow, cmd.template_id, decide)


async def unpublish_template(cmd: tc.UnpublishTemplate, uow: UnitOfWork) -> Any:
    """Take a template off the gallery; jobs it ran keep their version."""

    def decide(state: templates.TemplateState) -> Event | DomainError:
        if not state.published:
            return NotFound(detail="no such published template")
        return TemplateUnpublished(template_id=cmd.template_id, actor=cmd.actor)

    return await _write(uow, cmd.template_id, decide)


class UploadRecorded(msgspec.Struct, frozen=True, kw_only=True):
    id: str


async def record_upload(cmd: tc.RecordUpload, uow: UnitOfWork) -> Any:
    """Record a stored upload on its own stream (a new id: version 0)."""
    stream = upload_stream(cmd.upload_id)
    head = (await uow.lock(stream))[stream]
    if head.version:
        return Conflict(detail=f"upload {cmd.upload_id} exists")
    fields = msgspec.structs.asdict(cmd)
    uow.stage(stream, 0, [UploadStored(**fields)])
    return UploadRecorded(id=cmd.upload_id)


TEMPLATE_HANDLERS: dict[type[Command], Any] = {
    tc.PublishTemplate: publish_template,
    tc.ReviseTemplate: revise_template,
    tc.UnpublishTemplate: unpublish_template,
    tc.RecordUpload: record_upload,
}
