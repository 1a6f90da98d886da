"""The store engines the store tests run against; a new engine is one more entry in `STORE_ENGINES`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bot.store import SqliteStore, Store


class StoreEngine(Protocol):
    """How the tests reach one database engine: fresh databases, opening stores, checking internal state."""

    name: str

    def location(self, tmp_path: Path, name: str = "jobs") -> str:
        """Where a fresh, empty database called `name` lives for this test (the same name: the same one)."""
        ...

    async def open(self, location: str, *, clock: Callable[[], float] = time.time) -> Store:
        """Open (create, migrate) the store at `location`; each call is a separate connection."""
        ...

    async def dispatch_counts_match(self, location: str) -> bool:
        """Whether the engine's own round-robin bookkeeping agrees with the jobs that are queued."""
        ...


class SqliteEngine:
    """SQLite files under the test's tmp_path."""

    name = "sqlite"

    def location(self, tmp_path: Path, name: str = "jobs") -> str:
        """A file in a nested folder (the store creates the folders)."""
        return str(tmp_path / "state" / "nested" / f"{name}.db")

    async def open(self, location: str, *, clock: Callable[[], float] = time.time) -> Store:
        """`SqliteStore.open`."""
        return await SqliteStore.open(location, clock=clock)

    async def dispatch_counts_match(self, location: str) -> bool:
        """The trigger-kept waiting counts equal the real number of queued jobs (read by another connection)."""
        return await asyncio.to_thread(sqlite_dispatch_counts_match, location)


def sqlite_dispatch_counts_match(path: str | Path) -> bool:
    """The trigger-kept waiting counts of an SQLite store equal the real number of queued jobs."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        guilds = conn.execute(
            "SELECT g.guild_id, g.waiting, (SELECT COUNT(*) FROM jobs j WHERE j.status = 'queued' "
            "AND j.guild_id = g.guild_id) FROM dispatch_guilds g"
        ).fetchall()
        users = conn.execute(
            "SELECT u.waiting, (SELECT COUNT(*) FROM jobs j WHERE j.status = 'queued' "
            "AND j.guild_id = u.guild_id AND j.user_id = u.user_id) FROM dispatch_users u"
        ).fetchall()
    finally:
        conn.close()
    return all(row[1] == row[2] for row in guilds) and all(row[0] == row[1] for row in users)


STORE_ENGINES: list[StoreEngine] = [SqliteEngine()]
