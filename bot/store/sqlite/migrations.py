"""Numbered SQL migrations (`bot/migrations/NNNN_name.sql`): loading them and applying them to SQLite."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

import aiosqlite

from bot.store.base import SchemaTooNew
from bot.store.migration_files import Migration, read_migrations

log = logging.getLogger(__name__)


def load_migrations() -> list[Migration]:
    """Read `bot/migrations/NNNN_name.sql` (package data), numbered 1, 2, 3... without gaps."""
    return read_migrations("migrations")


def _is_only_comments(sql: str) -> bool:
    code = (line for line in sql.splitlines() if not line.strip().startswith("--"))
    return not "".join(code).replace(";", "").strip()


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (trigger bodies stay whole, comments go)."""
    statements: list[str] = []
    pending = ""
    *pieces, tail = script.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if not _is_only_comments(pending):
                statements.append(pending.strip())
            pending = ""
    pending += tail
    if not _is_only_comments(pending):
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending.strip()[:80]!r}")
    return statements


async def user_version(db: aiosqlite.Connection) -> int:
    """Return the database's `PRAGMA user_version` (the last migration applied)."""
    rows = await db.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already."""
    try:
        await db.execute("ROLLBACK")
    except sqlite3.OperationalError:  # SQLite already rolled back (or never began)
        pass


async def apply_migrations(db: aiosqlite.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last migration, one transaction per migration.

    Returns the resulting `PRAGMA user_version`. Raises `SchemaTooNew` if the database is newer
    than the migrations, without touching it. Safe when two processes start at once: the version
    is re-read under the write lock.
    """
    latest = migrations[-1].version if migrations else 0
    by_version = {m.version: m for m in migrations}
    current = await user_version(db)
    while True:
        if current > latest:
            raise SchemaTooNew(current, latest)
        if current == latest:
            return current
        await db.execute("BEGIN IMMEDIATE")
        try:
            current = await user_version(db)
            step = by_version.get(current + 1)
            if step is not None:
                for statement in split_statements(step.sql):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {step.version:d}")
            await db.execute("COMMIT")
        except BaseException:
            await rollback(db)
            raise
        if step is not None:
            log.info("database migrated to version %d (%s)", step.version, step.name)
            current = step.version
