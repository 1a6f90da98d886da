"""PostgreSQL migrations (`bot/migrations_pg/NNNN_name.sql`): applied once, however many processes start."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from bot.store.base import SchemaTooNew
from bot.store.migration_files import Migration, read_migrations
from bot.store.postgres.connection import MIGRATION_LOCK

log = logging.getLogger(__name__)


def load_pg_migrations() -> list[Migration]:
    """Read `bot/migrations_pg/NNNN_name.sql` (package data), numbered 1, 2, 3... without gaps."""
    return read_migrations("migrations_pg")


async def schema_version(con: asyncpg.Connection) -> int:
    """The highest migration applied to the database (0 for an empty one)."""
    if await con.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    return int(await con.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations"))


async def apply_pg_migrations(con: asyncpg.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last migration, one transaction per migration; return the version.

    Runs under a session-level advisory lock, so a second process starting at the same moment
    waits, then finds the work done. Raises `SchemaTooNew` if the database is newer than the
    migrations, without touching it. The version is kept in the table `schema_migrations`.
    PostgreSQL runs a migration file whole (one multi-statement script), so unlike SQLite's no
    splitting is needed.
    """
    latest = migrations[-1].version if migrations else 0
    await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        current = await schema_version(con)
        if current > latest:
            raise SchemaTooNew(current, latest)
        for step in migrations:
            if step.version <= current:
                continue
            async with con.transaction():
                await con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                await con.execute(step.sql)
                await con.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES ($1, $2, extract(epoch FROM clock_timestamp()))",
                    step.version,
                    step.name,
                )
            log.info("database migrated to version %d (%s)", step.version, step.name)
            current = step.version
        return current
    finally:
        if not con.is_closed():
            await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
