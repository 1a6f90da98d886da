"""The job store: the `Store` protocol (base), and its SQLite engine, which the bot opens as `JobStore`."""

from __future__ import annotations

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
    "split_statements",
]
