"""What the migrating role needs besides owning its database, checked before migrating.

Managed PostgreSQL (Supabase, Neon) gives an owner with CREATEROLE but no SUPERUSER.
That is enough; a role with less gets one sentence naming what it lacks instead of a
failed migration halfway through the schema."""

from __future__ import annotations

import asyncpg

from rcc.store.database import APP_ROLE

# 'SET' (may SET ROLE) exists from PostgreSQL 16; before it, membership implied it.
_CAN_SET_ROLE = """
    SELECT pg_has_role(current_user, $1,
               CASE WHEN current_setting('server_version_num')::int >= 160000
                    THEN 'SET' ELSE 'MEMBER' END)
"""


async def missing_privilege(conn: asyncpg.Connection) -> str | None:
    """Why this connection's role cannot apply the migrations, or None if it can."""
    me = await conn.fetchrow(
        "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    assert me is not None
    if me["rolsuper"]:
        return None
    name = me["rolname"]
    if not await conn.fetchval("SELECT has_schema_privilege('public', 'CREATE')"):
        return f'role "{name}" lacks CREATE on schema public (GRANT CREATE ON SCHEMA public)'
    app_exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE)
    if not app_exists:
        if me["rolcreaterole"]:
            return None
        return (
            f'role "{name}" lacks CREATEROLE, needed to create the app role {APP_ROLE} '
            f"(as a superuser: ALTER ROLE {name} CREATEROLE, or CREATE ROLE {APP_ROLE} "
            f"NOLOGIN; GRANT {APP_ROLE} TO {name})"
        )
    can_set = await conn.fetchval(_CAN_SET_ROLE, APP_ROLE)
    can_grant = await conn.fetchval(
        "SELECT pg_has_role(current_user, $1, 'MEMBER WITH ADMIN OPTION')", APP_ROLE
    )
    if can_set or can_grant:
        return None
    return (
        f'role "{name}" cannot SET ROLE {APP_ROLE}, which exists already (made by another '
        f"role): it lacks membership in {APP_ROLE} (as a superuser or {APP_ROLE}'s "
        f"creator: GRANT {APP_ROLE} TO {name})"
    )
