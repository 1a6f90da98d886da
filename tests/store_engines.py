"""The store engines the store tests run against; a new engine is one more entry in `STORE_ENGINES`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import asyncpg
import pytest

from bot.store import PostgresStore, SqliteStore, Store

if TYPE_CHECKING:  # imported at run time by pytest (tests/conftest.py's pytest_plugins), for its asserts
    from tests.pg import Databases


class StoreEngine(Protocol):
    """How one test reaches one database engine: fresh databases, opening stores, checking internal state."""

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

    async def empty(self, location: str) -> None:
        """Make the database at `location` (its stores closed) as empty as a fresh one: no rows, ids from 1."""
        ...

    async def close(self) -> None:
        """The test is over: let go of its databases (their stores are closed)."""
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

    async def empty(self, location: str) -> None:
        """Delete the file (and its WAL): the next store opened there starts a new one."""
        await asyncio.to_thread(delete_sqlite_files, location)

    async def close(self) -> None:
        """Nothing to do: tmp_path goes with the test."""


class PostgresEngine:
    """Databases of the session's PostgreSQL server: migrated, without rows, recycled after the test."""

    name = "postgres"

    def __init__(self, databases: Databases) -> None:
        """Take databases from `databases` (the `pg_databases` fixture)."""
        self._databases = databases
        self._taken: dict[str, str] = {}  # name -> database
        self._by_url: dict[str, str] = {}  # location -> database

    def location(self, tmp_path: Path, name: str = "jobs") -> str:
        """A superuser URL of a database of this test's own, at the latest schema (made on first open)."""
        if name not in self._taken:
            database = self._taken[name] = self._databases.reserve()
            self._by_url[self._databases.server.url(database)] = database
        return self._databases.server.url(self._taken[name])

    async def open(self, location: str, *, clock: Callable[[], float] = time.time) -> Store:
        """`PostgresStore.open`, with a small pool."""
        await self._databases.provide(self._by_url[location])
        return await PostgresStore.open(location, clock=clock, max_size=4)

    async def dispatch_counts_match(self, location: str) -> bool:
        """The trigger-kept waiting counts equal the real number of queued jobs (read by another connection)."""
        return await postgres_dispatch_counts_match(location)

    async def empty(self, location: str) -> None:
        """Delete every row and restart the sequences (the schema stays)."""
        database = self._by_url[location]
        await self._databases.provide(database)
        assert await self._databases.empty(database), f"{database} no longer has the store's schema"

    async def close(self) -> None:
        """Give the test's databases back, to be emptied and handed to later tests."""
        taken, self._taken, self._by_url = self._taken, {}, {}
        for database in taken.values():
            await self._databases.give_back(database)


def delete_sqlite_files(path: str) -> None:
    """Delete an SQLite database file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


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


async def postgres_dispatch_counts_match(url: str) -> bool:
    """The trigger-kept waiting counts of a PostgreSQL store equal the real number of queued jobs."""
    conn = await asyncpg.connect(url)
    try:
        wrong = await conn.fetchval(
            "SELECT (SELECT count(*) FROM dispatch_guilds AS g WHERE g.waiting <> (SELECT count(*) FROM jobs AS j "
            "WHERE j.status = 'queued' AND j.guild_id = g.guild_id)) + (SELECT count(*) FROM dispatch_users AS u "
            "WHERE u.waiting <> (SELECT count(*) FROM jobs AS j WHERE j.status = 'queued' "
            "AND j.guild_id = u.guild_id AND j.user_id = u.user_id))"
        )
    finally:
        await conn.close()
    return wrong == 0


# Engine name -> how one test gets that engine, from the test's own fixtures (asked for only when used).
STORE_ENGINES: dict[str, Callable[[pytest.FixtureRequest], StoreEngine]] = {
    "sqlite": lambda request: SqliteEngine(),
    "postgres": lambda request: PostgresEngine(request.getfixturevalue("pg_databases")),
}
