"""The PostgreSQL engine of the job store: many bot processes on one database."""

from __future__ import annotations

from bot.store.postgres.connection import StoreUnavailable
from bot.store.postgres.migrations import apply_pg_migrations, load_pg_migrations
from bot.store.postgres.store import PostgresStore

__all__ = ["PostgresStore", "StoreUnavailable", "apply_pg_migrations", "load_pg_migrations"]
