"""The asyncpg pool the PostgreSQL store's parts share: transactions, one retry when a connection died.

Connections come from a pool. A connection that died (PostgreSQL restarted, a backend was terminated,
the network dropped) fails the call that uses it; the store then tries once more on a fresh
connection when that is safe: always for reads, for a write that failed before its COMMIT was sent
(PostgreSQL rolled it back), for a transaction PostgreSQL rolled back itself (deadlock, serialisation
failure), and for writes that are idempotent (progress, messages, mark_running, settings, leases). A
claim is retried too: it first looks for a job carrying its prompt id, so a claim whose COMMIT landed
before the connection died is found rather than made twice. Otherwise the caller gets
`StoreUnavailable`, whose `outcome_unknown` says whether the write may have happened (the connection
died during COMMIT of a non-idempotent write such as enqueue, complete or cancel); it is also raised
when the second attempt fails (the server is still down).

The URL's password never reaches logs, exception messages or reprs: URLs are shown through
`bot.config.redact_url`, and a driver's error text is scrubbed of every spelling of the password.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Iterable
from enum import Enum
from typing import Any, Final, TypeVar

import asyncpg

from bot.config import redact_url
from bot.jobs import ACTIVE_STATUSES, IN_FLIGHT_STATUSES, TERMINAL_STATUSES, JobStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

# Advisory lock keys (per database). Owner keys are hashes (see queue.owner_key); a collision with
# these only makes two unrelated things wait for each other, never wrong.
MIGRATION_LOCK: Final = 0x436F6D6679_0001  # "Comfy" + 1
CLAIM_LOCK: Final = 0x436F6D6679_0002
# Held shared by enqueues of child jobs, exclusively by the purge (see purge_finished_before).
PARENTS_LOCK: Final = 0x436F6D6679_0003

_MASK: Final = "*" * 3  # what a password shows as (as in bot.config.redact_url)

# The database server's clock in unix seconds: the one clock every process on the database shares.
DB_NOW: Final = "extract(epoch FROM clock_timestamp())::double precision"


def in_list(values: Iterable[Enum | str]) -> str:
    """Render trusted enum values as an SQL list literal (matches the partial indexes' predicates)."""
    items = sorted(v.value if isinstance(v, Enum) else v for v in values)
    return "(" + ",".join(f"'{item}'" for item in items) + ")"


ACTIVE_SQL: Final = in_list(ACTIVE_STATUSES)
IN_FLIGHT_SQL: Final = in_list(IN_FLIGHT_STATUSES)
TERMINAL_SQL: Final = in_list(TERMINAL_STATUSES)


def status_filter(statuses: Collection[JobStatus] | None, first: int) -> tuple[str, list[Any]]:
    """`AND status = ANY($first)` and its argument, or nothing."""
    if statuses is None:
        return "", []
    return f" AND status = ANY(${first}::text[])", [sorted(JobStatus(s).value for s in statuses)]


class StoreUnavailable(RuntimeError):
    """The database could not be reached, or the connection died under a call.

    `outcome_unknown` is True when the connection died while a non-idempotent write was being
    committed: it may or may not have happened (look, e.g. with `get`, before doing it again).
    The message never contains the database password.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


# ------------------------------------------------------------------------------------ passwords


def secrets_of(url: str) -> set[str]:
    """Every spelling of the URL's password(s) that an error message could quote."""
    found: set[str] = set()
    if "://" in url:
        netloc = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
        # urllib splits the user info off at the last "@", asyncpg at the first: cover both.
        for userinfo in (netloc.partition("@")[0], netloc.rpartition("@")[0]):
            if ":" in userinfo:
                found.add(userinfo.partition(":")[2])
    found.update(re.findall(r"password\s*=\s*([^&#\s]+)", url, flags=re.IGNORECASE))
    found |= {urllib.parse.unquote(secret) for secret in found}
    return {secret for secret in found if secret}


def scrub(text: str, secrets: Collection[str]) -> str:
    """`text` with every one of `secrets` replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def shown_url(url: str) -> str:
    """The URL as logs and errors may show it: `bot.config.redact_url`, then scrubbed of its password
    wherever else it hides (a `password=` query parameter, a user info `urlsplit` cannot read)."""
    return scrub(redact_url(url), secrets_of(url))


# ------------------------------------------------------------------------------ failure kinds


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the connection (or the server) went away, not that the SQL failed."""
    if isinstance(exc, asyncpg.PostgresConnectionError | OSError):  # OSError includes TimeoutError
        return True
    if isinstance(
        exc,
        asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CrashShutdownError
        | asyncpg.exceptions.CannotConnectNowError,
    ):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # E.g. "another operation is in progress" on a connection we hold alone: the server's
        # goodbye (FATAL after pg_terminate_backend or a shutdown) arrived while it sat idle.
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def _rolled_back(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction itself (deadlock, serialisation failure)."""
    return isinstance(exc, asyncpg.TransactionRollbackError)


class PostgresConnection:
    """The pool, clock and retry policy shared by the parts of `PostgresStore` (see the module doc)."""

    def __init__(self, pool: asyncpg.Pool, *, url: str = "", clock: Callable[[], float] = time.time) -> None:
        """Wrap an open pool on a migrated database; use `PostgresStore.open` instead."""
        self._pool = pool
        self._url = shown_url(url) if url else "?"
        self._secrets = secrets_of(url)
        self._clock = clock

    async def _run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        idempotent: bool,
        transaction: bool = True,
        snapshot: bool = False,
    ) -> T:
        """Run `work` on a pooled connection (in a transaction), trying once more if the connection died.

        `snapshot`: a read-only REPEATABLE READ transaction, so several reads see one state. See
        the module docstring for when a second attempt is made and what the caller sees otherwise.
        """
        for attempt in (1, 2):
            sent = False  # the write may have reached the server (a COMMIT, or an autocommitted statement)
            try:
                async with self._pool.acquire() as con:
                    if not transaction:
                        sent = True
                        return await work(con)
                    tx = con.transaction(
                        isolation="repeatable_read" if snapshot else "read_committed", readonly=snapshot
                    )
                    await tx.start()
                    try:
                        result = await work(con)
                    except BaseException:
                        if not con.is_closed():
                            try:
                                await tx.rollback()
                            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                                pass  # the pool resets or discards the connection on release
                        raise
                    sent = True
                    await tx.commit()
                    return result
            except Exception as exc:
                lost = connection_lost(exc)
                if not lost and not _rolled_back(exc):
                    raise
                if lost and sent and not idempotent:
                    message = (
                        f"database {self._url}: the connection was lost while saving a change; "
                        f"it may or may not have been saved ({type(exc).__name__})"
                    )
                    raise StoreUnavailable(message, outcome_unknown=True) from exc
                if attempt == 2:
                    detail = scrub(str(exc), self._secrets)
                    raise StoreUnavailable(
                        f"database {self._url} unavailable: {type(exc).__name__}: {detail}"
                    ) from exc
                why = "connection lost" if lost else "transaction rolled back by the server"
                log.warning("database %s: %s (%s); trying once more", self._url, why, type(exc).__name__)
                if lost:
                    # When one pooled connection died, its idle siblings most likely died with it (a
                    # restart, a failover): the next acquire connects afresh instead of trying them.
                    await self._pool.expire_connections()
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One read statement (retried once if the connection died)."""

        async def work(con: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await con.fetch(sql, *args))

        return await self._run(work, idempotent=True, transaction=False)
