"""The PostgreSQL store: connects a pool, migrates the database and joins the parts (queue, jobs, ...).

`PostgresStore` keeps the `Store` contract (see bot/store/base.py) for any number of bot processes on
one database: claims are serialised and limits checked under advisory locks (see `queue`), a call
whose connection died is tried once more when that is safe (see `connection`), and backend leases
run on the database server's clock (see `leases`). Tested on PostgreSQL 16; the SQL needs 11 or
newer. Connect directly or through a session-pooling proxy: the migration lock is session-level and
asyncpg prepares statements.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import asyncpg

from bot.store.migration_files import Migration
from bot.store.postgres.bulk_import import PostgresBulkImport
from bot.store.postgres.connection import StoreUnavailable, scrub, secrets_of, shown_url
from bot.store.postgres.jobs import PostgresJobs
from bot.store.postgres.leases import PostgresLeases
from bot.store.postgres.migrations import apply_pg_migrations, load_pg_migrations, schema_version
from bot.store.postgres.queue import PostgresQueue
from bot.store.postgres.retention import PostgresRetention
from bot.store.postgres.settings import PostgresSettings

log = logging.getLogger(__name__)


class PostgresStore(
    PostgresQueue, PostgresJobs, PostgresSettings, PostgresRetention, PostgresLeases, PostgresBulkImport
):
    """The bot's PostgreSQL database: jobs, outputs, user settings, fair dispatch state, leases; a `Store`.

    Each part holds one role's SQL over the pool they share (`PostgresConnection`). Calls from one
    process run concurrently on the pool's connections. Job times come from the injectable `clock`;
    lease times from the database server's (see `PostgresLeases`). Ids are BIGINT and never reused.
    """

    def __init__(self, pool: asyncpg.Pool, *, url: str = "", clock: Callable[[], float] = time.time) -> None:
        """Wrap an open pool on a migrated database; use `PostgresStore.open` instead."""
        super().__init__(pool, url=url, clock=clock)
        self._closed = False

    def __repr__(self) -> str:
        """Name the database without its password."""
        return f"<PostgresStore {self._url}{' closed' if self._closed else ''}>"

    @classmethod
    async def open(
        cls,
        url: str,
        /,
        *,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float | None = None,
    ) -> PostgresStore:
        """Connect a pool to the database at `url` (`postgresql://user:password@host:port/db`) and migrate it.

        Raises `SchemaTooNew` if the database was written by a newer bot, `StoreUnavailable` when
        the server cannot be reached or refuses the login (the message names the URL without its
        password). `migrations` defaults to the package's own (`bot/migrations_pg`).
        """
        failure: str | None = None
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                # JIT compiling a sub-millisecond claim only slows it down.
                server_settings={"application_name": "comfy-imagine", "jit": "off"},
            )
        except Exception as exc:  # refused, unreachable, wrong password, malformed URL...
            detail = scrub(str(exc), secrets_of(url))
            failure = f"cannot connect to {shown_url(url)}: {type(exc).__name__}: {detail}"
        if failure is not None:  # raised outside the handler: the original may quote the password
            raise StoreUnavailable(failure)
        try:
            async with pool.acquire() as con:
                version = await apply_pg_migrations(
                    con, load_pg_migrations() if migrations is None else migrations
                )
        except BaseException:
            await pool.close()
            raise
        log.debug("job store open at %s (schema version %d)", shown_url(url), version)
        return cls(pool, url=url, clock=clock)

    async def close(self) -> None:
        """Close the pool (waiting up to 10 s for calls in progress); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:
            self._pool.terminate()

    async def __aenter__(self) -> PostgresStore:
        """Use the store as `async with await PostgresStore.open(url) as store:`."""
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
        """Return the highest migration applied to the database."""
        return await self._run(schema_version, idempotent=True, transaction=False)
