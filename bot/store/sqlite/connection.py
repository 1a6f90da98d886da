"""The SQLite connection the store's parts share: one lock, write transactions, consistent reads."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from enum import Enum
from typing import Any, Final, TypeAlias

import aiosqlite

from bot.jobs import ACTIVE_STATUSES, IN_FLIGHT_STATUSES, TERMINAL_STATUSES
from bot.store.sqlite.migrations import rollback


def in_list(values: Iterable[Enum | str]) -> str:
    """Render trusted enum values as an SQL list literal, e.g. `('queued','running')`."""
    items = sorted(v.value if isinstance(v, Enum) else v for v in values)
    return "(" + ",".join(f"'{item}'" for item in items) + ")"


def placeholders(count: int) -> str:
    """`?,?,?` for `count` parameters."""
    return ",".join("?" * count)


ACTIVE_SQL: Final = in_list(ACTIVE_STATUSES)
IN_FLIGHT_SQL: Final = in_list(IN_FLIGHT_STATUSES)
TERMINAL_SQL: Final = in_list(TERMINAL_STATUSES)

Params: TypeAlias = Sequence[Any] | dict[str, Any]


class SqliteConnection:
    """One aiosqlite connection, used by one asyncio loop, shared by the parts of `SqliteStore`.

    Every call is serialised by an asyncio lock so coroutines never interleave inside a transaction.
    Other processes (or stores) may open the same file: writes take `BEGIN IMMEDIATE` and wait up to the
    busy timeout.
    """

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an open, migrated connection; use `SqliteStore.open` instead."""
        self._db = db
        self._clock = clock
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise with other calls and run the body in one write transaction."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                await rollback(self._db)
                raise

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise with other calls; several reads see one consistent state."""
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                await rollback(self._db)

    async def _fetch(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    @staticmethod
    async def _rows(db: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await db.execute_fetchall(sql, params))
