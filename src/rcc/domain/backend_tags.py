"""Tag requirements: which backends a job may run on.

A job type may require tags (`RCC_JOB_TYPE_TAGS=VIDEO_TASK=video`, several with `+`:
`VIDEO_TASK=video+48gb`), and so may a template (`required_tags(..., extra=...)`); a
backend serves a job only when it carries every required tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rcc.domain.backends import TAG

JobTypeTags = Mapping[str, frozenset[str]]


class BadTagSetting(ValueError):
    """RCC_JOB_TYPE_TAGS cannot be read."""


def parse_job_type_tags(raw: str) -> dict[str, frozenset[str]]:
    """`TYPE=tag[+tag...]` entries separated by commas, e.g. `VIDEO_TASK=video+48gb`."""
    found: dict[str, frozenset[str]] = {}
    for entry in filter(None, (item.strip() for item in raw.split(","))):
        job_type, sep, tags = entry.partition("=")
        names = frozenset(t.strip().lower() for t in tags.split("+") if t.strip())
        if not sep or not job_type.strip() or not names:
            raise BadTagSetting(f"RCC_JOB_TYPE_TAGS: {entry!r} is not TYPE=tag[+tag...]")
        bad = sorted(t for t in names if not TAG.match(t))
        if bad:
            raise BadTagSetting(f"RCC_JOB_TYPE_TAGS: bad tag(s) {bad} in {entry!r}")
        found[job_type.strip()] = found.get(job_type.strip(), frozenset()) | names
    return found


def required_tags(job_type: str, by_type: JobTypeTags, extra: Iterable[str] = ()) -> frozenset[str]:
    """The tags a job needs: its type's (from the setting) plus `extra` (a template's)."""
    return by_type.get(job_type, frozenset()) | frozenset(t.lower() for t in extra)


def serves(backend_tags: Iterable[str], required: frozenset[str]) -> bool:
    """Does a backend with `backend_tags` meet the requirement?"""
    return required <= frozenset(backend_tags)


def unmet_reason(required: frozenset[str]) -> str:
    """What a waiting job says when no live backend carries its tags."""
    return (
        f"no live ComfyUI backend has the tags this job needs ({', '.join(sorted(required))}); "
        "an admin can tag one in /admin/backends"
    )


def reason_key(job_type: str, extra: Iterable[str] = ()) -> str:
    """The key of a waiting reason: the job type, plus `+tag...` when the job's template
    requires tags of its own (the adapter writes reasons by it, the portal reads them)."""
    tags = sorted({t.lower() for t in extra})
    return "+".join([job_type, *tags])
