"""The check before paying: a workflow against the backend's description (422
`invalid_workflow` with `node_errors`), and the header that says what it was checked
against."""

from __future__ import annotations

from typing import Any

import asyncpg

from portal.backend_descriptions import BackendDescriptions
from portal.errors import ApiError
from rcc.domain.node_check import Deferred, check_workflow

CHECK_HEADER = "X-Workflow-Check"


async def check_before_paying(
    pool: asyncpg.Pool,
    descriptions: BackendDescriptions,
    workflow: dict[str, Any],
    deferred: Deferred = frozenset(),
) -> str:
    """Refuse a workflow the backend would refuse; answer what it was checked against:
    `live`, `cached`, `last_known <time>` (no backend answered) or `unchecked` (no
    backend has ever described itself)."""
    described = await descriptions.describe(pool)
    if described.source == "none":
        return "unchecked"
    node_errors = check_workflow(workflow, described.info, deferred)
    if node_errors:
        raise ApiError(
            422,
            "invalid_workflow",
            "the backend would refuse this workflow: "
            + "; ".join(
                f"node {n} {e['field']}: {e['message']}"
                for n, es in node_errors.items()
                for e in es
            ),
            node_errors=node_errors,
            checked_against=described.source,
        )
    if described.source == "last_known" and described.fetched_at is not None:
        return f"last_known {described.fetched_at.isoformat()}"
    return described.source
