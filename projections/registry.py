"""Every projection, in the order a batch applies them.

The composition root (rcc/cli.py, the benches, the tests) takes them from here and
hands them to the projector runtime; the core never imports the read models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections import (  # h4
    balances,
    dashboard,
    jobs,
    ledger,
    lots,
    models,
    ops_log,
    orgs,
    payments,
    templates,
    uploads,
    users,
)
from projections.backends import PROJECTION as BACKENDS  # the GPU pool (h8)
from projections.org_billing import PROJECTION as ORG_BILLING  # orgs' Stripe customers (h14)
from projections.policy_values import PROJECTION as POLICY_VALUES  # policies in SQL (h13)
from rcc.projector.model import Projection

ALL: tuple[Projection[Any], ...] = (
    balances.PROJECTION,
    ledger.PROJECTION,
    jobs.PROJECTION,
    payments.PROJECTION,
    users.PROJECTION,
    dashboard.PROJECTION,
    ops_log.PROJECTION,
    models.PROJECTION,
    lots.PROJECTION,
    BACKENDS,  # the GPU pool (h8)
    orgs.PROJECTION,  # organisations (h5)
    templates.PROJECTION,  # h4
    uploads.PROJECTION,  # h4
    POLICY_VALUES,  # policies in SQL, for the adapters' claim (h13)
    ORG_BILLING,  # orgs' Stripe customers (h14)
)
NAMES: tuple[str, ...] = tuple(p.name for p in ALL)


class UnknownProjection(KeyError):
    """A projection name that no module defines."""


def select(names: Sequence[str] | None = None) -> list[Projection[Any]]:
    """The named projections (all of them for None), in registry order."""
    if not names:
        return list(ALL)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise UnknownProjection(f"unknown projection(s) {unknown}; known: {list(NAMES)}")
    return [p for p in ALL if p.name in names]
