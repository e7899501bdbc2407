"""A newer RCC, for rolling-deploy tests: this version plus one event type it lacks.

`OrgOpened` is what a newer writer might record; this version's decoder does not know
it. `python -m tests.newer_version <rcc arguments>` runs the real `rcc` command with
the type added to the decoder: the upgraded process of a rolling deploy. Appending
`OrgOpened` goes through the real append function (rcc_append_v2), as a newer writer's
command would."""

from __future__ import annotations

import sys

import asyncpg

from rcc.domain.events import EVENT_CLASSES, Event
from rcc.store.event_store import Appended, StreamWrite, append

ORG_OPENED = "org_opened"


class OrgOpened(Event, frozen=True, kw_only=True, tag=ORG_OPENED):
    org_id: str
    name: str


def upgrade() -> None:
    """Teach this process's decoder the newer type (what installing the newer version does)."""
    EVENT_CLASSES[ORG_OPENED] = OrgOpened


async def write_newer_event(pool: asyncpg.Pool, org_id: str) -> Appended:
    """Append an OrgOpened event as a newer writer would: one command, one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        write = StreamWrite(
            stream_id=f"org-{org_id}",
            expected_version=0,
            events=[OrgOpened(org_id=org_id, name="Acme")],
        )
        [appended] = await append(conn, [write])
    return appended


if __name__ == "__main__":
    from rcc.cli import main

    upgrade()
    sys.exit(main(sys.argv[1:]))
