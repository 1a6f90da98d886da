"""The SQLite engine of the job store (the one the bot opens)."""

from __future__ import annotations

from bot.store.sqlite.migrations import Migration, apply_migrations, load_migrations, split_statements
from bot.store.sqlite.store import SqliteStore

__all__ = ["Migration", "SqliteStore", "apply_migrations", "load_migrations", "split_statements"]
