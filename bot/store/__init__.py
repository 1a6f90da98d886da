"""The job store: the `Store` protocol (base), and its SQLite engine, which the bot opens as `JobStore`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bot.store.base import (
    PROGRESS_WRITE_STEP,
    RATE_WINDOW_S,
    UNSET,
    BackendLease,
    SchemaTooNew,
    Store,
    Unset,
)
from bot.store.sqlite import Migration, SqliteStore, apply_migrations, load_migrations, split_statements

# The engine the bot opens; callers name it by its role.
JobStore = SqliteStore


async def open_store(location: object, *, clock: Callable[[], float] = time.time) -> Store:
    """Open the store at `location`: an SQLite file path (PostgreSQL arrives with its engine)."""
    if isinstance(location, str | os.PathLike):
        return await SqliteStore.open(location, clock=clock)
    raise NotImplementedError("PostgreSQL (storage.database = postgresql://...) is not available yet")


__all__ = [
    "PROGRESS_WRITE_STEP",
    "RATE_WINDOW_S",
    "UNSET",
    "BackendLease",
    "JobStore",
    "Migration",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "Unset",
    "apply_migrations",
    "load_migrations",
    "open_store",
    "split_statements",
]
