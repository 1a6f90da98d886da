"""The job store: the `Store` protocol (base) and its engines, SQLite (one process) and PostgreSQL (many).

`open_store` opens the one the config names: a file path is SQLite, a `DatabaseUrl` PostgreSQL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from bot.config import DatabaseUrl
from bot.store.base import (
    PROGRESS_WRITE_STEP,
    RATE_WINDOW_S,
    UNSET,
    BackendLease,
    SchemaTooNew,
    Store,
    Unset,
)
from bot.store.migration_files import Migration
from bot.store.postgres import PostgresStore, StoreUnavailable, load_pg_migrations
from bot.store.sqlite import SqliteStore, apply_migrations, load_migrations, split_statements

# The SQLite engine, by its role: the store the bot opens when the config names a file.
JobStore = SqliteStore

_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def _is_postgres_url(text: str) -> bool:
    return text.lower().startswith(_POSTGRES_PREFIXES)


async def open_store(location: str | Path | DatabaseUrl, *, clock: Callable[[], float] = time.time) -> Store:
    """Open (create, migrate) the store at `location`: PostgreSQL for a `DatabaseUrl`, SQLite for a path.

    A string that starts with `postgresql://` (or `postgres://`) is taken as a database URL, not as a
    file name. Raises `SchemaTooNew` for a database written by a newer bot, and for PostgreSQL
    `StoreUnavailable` when the server cannot be reached (the message shows the URL without its
    password: only the connecting call sees `DatabaseUrl.secret()`).
    """
    if isinstance(location, str) and _is_postgres_url(location):
        location = DatabaseUrl(location)
    if isinstance(location, DatabaseUrl):
        return await PostgresStore.open(location.secret(), clock=clock)
    return await SqliteStore.open(os.fspath(location), clock=clock)


__all__ = [
    "PROGRESS_WRITE_STEP",
    "RATE_WINDOW_S",
    "UNSET",
    "BackendLease",
    "JobStore",
    "Migration",
    "PostgresStore",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "Unset",
    "apply_migrations",
    "load_migrations",
    "load_pg_migrations",
    "open_store",
    "split_statements",
]
