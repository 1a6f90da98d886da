"""The SQLite store: opens and migrates the file and joins the parts (queue, jobs, settings, retention)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import aiosqlite

from bot.store.sqlite.jobs import SqliteJobs
from bot.store.sqlite.leases import SqliteLeases
from bot.store.sqlite.migrations import Migration, apply_migrations, load_migrations, user_version
from bot.store.sqlite.queue import SqliteQueue
from bot.store.sqlite.retention import SqliteRetention
from bot.store.sqlite.settings import SqliteSettings

log = logging.getLogger(__name__)


class SqliteStore(SqliteQueue, SqliteJobs, SqliteSettings, SqliteRetention, SqliteLeases):
    """The bot's SQLite database: jobs, outputs, user settings and fair dispatch state; a `Store`.

    Each part holds one role's SQL over the connection they share (`SqliteConnection`): one
    connection, used by one asyncio loop, every call serialised by an asyncio lock. Other processes
    (or stores) may open the same file: writes take `BEGIN IMMEDIATE` and wait up to the busy timeout.
    """

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an open, migrated connection; use `SqliteStore.open` instead."""
        super().__init__(db, clock=clock)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        /,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 5.0,
        migrations: Sequence[Migration] | None = None,
    ) -> SqliteStore:
        """Open (creating parent folders and the file) and migrate the database at `path`.

        Raises `SchemaTooNew` if the file was written by a newer bot. `migrations` defaults to
        the package's own; tests pass others.
        """
        location = os.fspath(path)
        if location != ":memory:" and not location.startswith("file:"):
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(location, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000):d}")
            await db.execute("PRAGMA foreign_keys = ON")
            mode = next(iter(await db.execute_fetchall("PRAGMA journal_mode = WAL")))[0]
            if mode != "wal" and location != ":memory:":
                log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", location, mode)
            # WAL + NORMAL: a commit survives a crash of the bot; only power loss can drop
            # the last moments, and never corrupts the file.
            await db.execute("PRAGMA synchronous = NORMAL")
            version = await apply_migrations(db, load_migrations() if migrations is None else migrations)
        except BaseException:
            await db.close()
            raise
        log.debug("job store open at %s (schema version %d)", location, version)
        return cls(db, clock=clock)

    async def close(self) -> None:
        """Close the connection (after letting SQLite refresh its planner statistics); idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._db.execute("PRAGMA optimize")
            finally:
                await self._db.close()

    async def __aenter__(self) -> SqliteStore:
        """Use the store as `async with await SqliteStore.open(path) as store:`."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await self.close()

    async def schema_version(self) -> int:
        """Return the database's `PRAGMA user_version`."""
        async with self._lock:
            return await user_version(self._db)
