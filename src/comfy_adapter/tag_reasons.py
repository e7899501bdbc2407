"""Why a job that requires tags waits, when the backends that carry them cannot take it.

A job type's required tags (docs/BACKENDS.md) may be carried only by backends that are
unreachable or draining; the job then says so, naming them, instead of a generic
"waiting" (issue 16: its owner learns that the GPU server it needs is down). Only when
no backend in the pool carries the tags at all does it say that an admin must tag one.
"""

from __future__ import annotations

from collections.abc import Iterable

from comfy_adapter.backends import Backend
from rcc.domain.backend_tags import unmet_reason


def tag_wait_reason(required: frozenset[str], backends: Iterable[Backend]) -> str | None:
    """Why a job needing `required` cannot go to any backend now; None when a live
    (healthy, undrained) backend carries the tags."""
    carriers = [b for b in backends if not b.removed and required <= b.tags]
    if any(b.healthy and not b.draining for b in carriers):
        return None
    if not carriers:
        return unmet_reason(required)
    tags = ", ".join(sorted(required))
    down = [b for b in carriers if not b.healthy]
    if not down:  # every carrier is draining
        urls = ", ".join(b.url for b in carriers)
        return (
            f"every ComfyUI backend with the tags this job needs ({tags}) is draining "
            f"({urls}); the job waits until an admin undrains one in /admin/backends"
        )
    details = "; ".join(_state(b) for b in carriers)
    return (
        f"the ComfyUI backend with the tags this job needs ({tags}) is unreachable "
        f"({details}); the job continues when it answers"
        if len(carriers) == 1
        else f"no ComfyUI backend with the tags this job needs ({tags}) can take it: "
        f"{details}; the job continues when one answers"
    )


def _state(backend: Backend) -> str:
    if not backend.healthy:
        also = " and draining" if backend.draining else ""  # it gets nothing when back
        return f"{backend.url} is unreachable{also}: {backend.last_error or 'no answer'}"
    return f"{backend.url} is draining"
