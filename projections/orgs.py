"""Organisations, their members and invitations (issue 13): `orgs`, `org_members`,
`org_invitations`.

Org events are rare next to job events (a spend counter event per job is not this
read model's business: usage is read from the org's head), so a batch applies its
events one statement each, in log order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rcc.domain.events import (
    Event,
    OrgBudgetSet,
    OrgCreated,
    OrgInvitationAccepted,
    OrgInvitationExpired,
    OrgMemberBudgetSet,
    OrgMemberInvited,
    OrgMemberLeft,
    OrgMemberRemoved,
    OrgOwnershipTransferred,
    OrgRoleChanged,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "orgs"
TABLES = ("orgs", "org_members", "org_invitations")

Statement = tuple[str, tuple[Any, ...]]


@dataclass
class Batch:
    statements: list[Statement] = field(default_factory=list)


_TOUCH = "UPDATE orgs SET updated_at = $2 WHERE id = $1"
_COUNT = """UPDATE orgs SET member_count = (SELECT count(*) FROM org_members
                                           WHERE org_id = $1 AND active), updated_at = $2
            WHERE id = $1"""
_JOIN = """INSERT INTO org_members (org_id, user_id, email, role, active, joined_at)
           VALUES ($1, $2, $3, $4, true, $5)
           ON CONFLICT (org_id, user_id) DO UPDATE
              SET email = $3, role = $4, active = true, joined_at = $5, left_at = NULL,
                  monthly_budget_rcc = NULL"""
_BUDGET = "UPDATE org_members SET monthly_budget_rcc = $3 WHERE org_id = $1 AND user_id = $2"
_ROLE = "UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2"


def _statements(event: Event, at: Any) -> list[Statement]:
    """What one event changes in the tables."""
    match event:
        case OrgCreated():
            return [
                (
                    """INSERT INTO orgs (id, name, owner_user_id, wallet_id, member_count,
                                         created_at, updated_at)
                       VALUES ($1, $2, $3, $4, 1, $5, $5)""",
                    (event.org_id, event.name, event.owner_user_id, event.wallet_id, at),
                ),
                (_JOIN, (event.org_id, event.owner_user_id, event.owner_email, "owner", at)),
            ]
        case OrgMemberInvited():
            return [
                (
                    """INSERT INTO org_invitations (id, org_id, email, role, status, expires_at,
                                                    created_at)
                       VALUES ($1, $2, $3, $4, 'pending', $5, $6)""",
                    (
                        event.invitation_id,
                        event.org_id,
                        event.email,
                        event.role,
                        event.expires_at,
                        at,
                    ),
                )
            ]
        case OrgInvitationAccepted():
            return [
                (
                    "UPDATE org_invitations SET status = 'accepted' WHERE id = $1",
                    (event.invitation_id,),
                ),
                (_JOIN, (event.org_id, event.user_id, event.email, event.role, at)),
                (_COUNT, (event.org_id, at)),
            ]
        case OrgInvitationExpired():
            return [
                (
                    "UPDATE org_invitations SET status = 'expired' WHERE id = $1",
                    (event.invitation_id,),
                )
            ]
        case OrgRoleChanged():
            return [
                (_ROLE, (event.org_id, event.user_id, event.role)),
                (_TOUCH, (event.org_id, at)),
            ]
        case OrgMemberBudgetSet():
            return [
                (_BUDGET, (event.org_id, event.user_id, event.monthly_budget_rcc)),
            ]
        case OrgBudgetSet():
            return [
                (
                    "UPDATE orgs SET monthly_budget_rcc = $2, updated_at = $3 WHERE id = $1",
                    (event.org_id, event.monthly_budget_rcc, at),
                ),
            ]
        case OrgMemberRemoved() | OrgMemberLeft():
            return [
                (
                    "UPDATE org_members SET active = false, left_at = $3 "
                    "WHERE org_id = $1 AND user_id = $2",
                    (event.org_id, event.user_id, at),
                ),
                (_COUNT, (event.org_id, at)),
            ]
        case OrgOwnershipTransferred():
            return [
                (_ROLE, (event.org_id, event.from_user_id, "admin")),
                (_ROLE, (event.org_id, event.to_user_id, "owner")),
                (
                    "UPDATE orgs SET owner_user_id = $2, updated_at = $3 WHERE id = $1",
                    (event.org_id, event.to_user_id, at),
                ),
            ]
    return []


def on_org_event(batch: Batch, event: Event, record: RecordedEvent) -> None:
    batch.statements.extend(_statements(event, record.recorded_at))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    for sql, args in batch.statements:
        await conn.execute(sql, *args)


HANDLERS: dict[type, Handler[Batch]] = dict.fromkeys(
    (
        OrgCreated,
        OrgMemberInvited,
        OrgInvitationAccepted,
        OrgInvitationExpired,
        OrgRoleChanged,
        OrgMemberBudgetSet,
        OrgBudgetSet,
        OrgMemberRemoved,
        OrgMemberLeft,
        OrgOwnershipTransferred,
    ),
    on_org_event,
)

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
