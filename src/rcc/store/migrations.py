"""Numbered SQL migrations from `schema/`, applied once each, safe from two processes at once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from rcc.store.owner_privileges import missing_privilege

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schema"
# Any constant works: every migrator takes this session lock before looking.
_LOCK_KEY = 0x5CC_0001
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A landed migration was edited, the files are misnumbered, or the role lacks a
    privilege a migration needs (the message names it)."""


def discover(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    """The migrations in version order, each number once. Numbers are reserved per piece
    of work, so a branch may lack a lower one for a while; `migrate` refuses to apply a
    migration below one already applied, so every database applies them in order."""
    found = []
    for path in sorted(schema_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_what.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, schema_dir: Path = SCHEMA_DIR) -> list[int]:
    """Apply what is missing, each migration in its own transaction; return what was applied."""
    migrations = discover(schema_dir)
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        if await pending(conn, schema_dir) and (lacking := await missing_privilege(conn)):
            raise MigrationError(f"cannot migrate: {lacking}")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    int         PRIMARY KEY,
                   name       text        NOT NULL,
                   checksum   text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {row["version"]: row["checksum"] for row in rows}
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after "
                        "it was applied; add a new migration instead"
                    )
                continue
            if done and migration.version < max(done):
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} is older than "
                    f"{max(done):04d}, which this database has applied already"
                )
            await _apply(conn, migration)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    """One migration and its record, in one transaction."""
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.InsufficientPrivilegeError as error:
        # Whatever the pre-check missed: PostgreSQL's own words name the privilege.
        detail = f" ({error.detail})" if error.detail else ""
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name} needs a privilege this "
            f"role lacks: {error}{detail}"
        ) from None


async def pending(conn: asyncpg.Connection, schema_dir: Path = SCHEMA_DIR) -> list[int]:
    """Versions not yet applied (for /readyz)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.version for m in discover(schema_dir) if m.version not in done]
