"""PostgreSQL job store: the SQLite store's queues, fairness, limits and state machine, shared by many processes.

`PostgresJobStore` has the public methods, return types, exceptions and semantics of
`bot.store.JobStore`, on an asyncpg pool; any number of bot processes may share one database.

Claims are serialised: a claim transaction first takes one transaction-scoped advisory lock
(`pg_advisory_xact_lock`), then runs one `UPDATE ... RETURNING` that picks the least recently
served guild with runnable waiting jobs, the least recently served member in it and that member's
oldest job, exactly like SQLite's claim. `FOR UPDATE SKIP LOCKED` would let claims run side by side,
but a claim that skips a locked row takes the next one in line, so two claims racing would serve one
guild twice in a row: the order would depend on timing. Serialising costs nothing that matters: a
claim holds the lock for one index-driven statement (well under a millisecond) and only claims wait
for it. Because each statement of a READ COMMITTED transaction sees everything committed before it
started, the UPDATE after the lock sees every earlier claim. If a job it picked was changed by a
concurrent cancel in the meantime, it claims nothing, and the claim looks again (still under the lock).
The claim transaction also sets `enable_seqscan` off (`set_config(..., true)`, for that transaction
only), PostgreSQL's nearest thing to SQLite's INDEXED BY: with missing or skewed statistics a
LIMIT 1 probe must not turn into a scan of the jobs' whole history. With 10,000 jobs waiting a claim
takes about a millisecond (`bench/claim_pg.py`).

Limits hold across processes: `enqueue_many` first takes transaction-scoped advisory locks on its
guild (and, with limits, its member) keys in a fixed order, so the counting and the insert of two
commands for one guild or member never overlap, wherever they run. Migrations run under a
session-level advisory lock, so two processes starting at once apply each step once.

Connections come from a pool. A connection that died (PostgreSQL restarted, a backend was terminated,
the network dropped) fails the call that uses it; the store then tries once more on a fresh
connection when that is safe: always for reads, for a write that failed before its COMMIT was sent
(PostgreSQL rolled it back), for a transaction PostgreSQL rolled back itself (deadlock, serialisation
failure), and for writes that are idempotent (progress, messages, prompt ids, mark_running,
settings). A claim is retried too: it first looks for a job carrying its prompt id, so a claim whose
COMMIT landed before the connection died is found rather than made twice. Otherwise the caller
gets `StoreUnavailable`, whose `outcome_unknown` says whether the write may have happened (the
connection died during COMMIT of a non-idempotent write such as enqueue, complete or cancel); it is
also raised when the second attempt fails (the server is still down).

The URL's password never reaches logs, exception messages or reprs: see `redact_url`.
Tested on PostgreSQL 16; the SQL needs 11 or newer. Connect directly or through a session-pooling
proxy: the migration lock is session-level and asyncpg prepares statements.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import string
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from types import TracebackType
from typing import Any, Final, TypeVar

import asyncpg

from bot.jobs import (
    ACTIVE_STATUSES,
    IN_FLIGHT_STATUSES,
    TERMINAL_STATUSES,
    EnqueueLimits,
    GuildStats,
    InvalidTransition,
    Job,
    JobKind,
    JobNotFound,
    JobOutput,
    JobStatus,
    LimitExceeded,
    LimitKind,
    NewJob,
    OutputFile,
    QueueSnapshot,
    UserSettings,
    can_transition,
    clamp_progress,
    overall_position,
    round_robin,
    sources_of,
)
from bot.store import PROGRESS_WRITE_STEP, RATE_WINDOW_S, UNSET, Migration, SchemaTooNew, _Unset

log = logging.getLogger(__name__)

T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Advisory lock keys (per database). Owner keys are hashes (see _owner_key); a collision with
# these only makes two unrelated things wait for each other, never wrong.
_MIGRATION_LOCK: Final = 0x436F6D6679_0001  # "Comfy" + 1
_CLAIM_LOCK: Final = 0x436F6D6679_0002
# Held shared by enqueues of child jobs, exclusively by the purge (see purge_finished_before).
_PARENTS_LOCK: Final = 0x436F6D6679_0003
# A claim that found its picked job changed under it looks again, at most this many times.
_CLAIM_TRIES: Final = 5
_SETTING_FIELDS: Final = ("model", "aspect", "style", "negative")
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SQL_ASCII_LOWER: Final = f"translate(prompt, '{string.ascii_uppercase}', '{string.ascii_lowercase}')"


class StoreUnavailable(RuntimeError):
    """The database could not be reached, or the connection died under a call.

    `outcome_unknown` is True when the connection died while a non-idempotent write was being
    committed: it may or may not have happened (look, e.g. with `get`, before doing it again).
    The message never contains the database password.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


# ---------------------------------------------------------------------------------- URLs


def redact_url(url: str) -> str:
    """Return the database URL with its password replaced by `***` (the user is kept)."""
    if "://" not in url:  # a libpq key=value string
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url, flags=re.IGNORECASE)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:***@{hosts}" if at and ":" in userinfo else parts.netloc
    query = "&".join(
        re.sub(r"^((?:ssl)?password)=.*$", r"\1=***", field, flags=re.IGNORECASE)
        for field in parts.query.split("&")
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets_of(url: str) -> set[str]:
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


def _scrub(text: str, secrets: Collection[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------- migrations


def load_pg_migrations() -> list[Migration]:
    """Read `bot/migrations_pg/NNNN_name.sql` (package data), numbered 1, 2, 3... without gaps."""
    folder: Traversable = resources.files("bot").joinpath("migrations_pg")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps: {[m.version for m in found]}")
    return found


async def _schema_version(con: asyncpg.Connection) -> int:
    if await con.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    return int(await con.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations"))


async def apply_pg_migrations(con: asyncpg.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last migration, one transaction per migration; return the version.

    Runs under a session-level advisory lock, so a second process starting at the same moment
    waits, then finds the work done. Raises `SchemaTooNew` if the database is newer than the
    migrations, without touching it. The version is kept in the table `schema_migrations`.
    """
    latest = migrations[-1].version if migrations else 0
    await con.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        current = await _schema_version(con)
        if current > latest:
            raise SchemaTooNew(current, latest)
        for step in migrations:
            if step.version <= current:
                continue
            async with con.transaction():
                await con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                await con.execute(step.sql)
                await con.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES ($1, $2, extract(epoch FROM clock_timestamp()))",
                    step.version,
                    step.name,
                )
            log.info("database migrated to version %d (%s)", step.version, step.name)
            current = step.version
        return current
    finally:
        if not con.is_closed():
            await con.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


# ------------------------------------------------------------------------------ SQL bits


def _in_list(values: Iterable[JobStatus]) -> str:
    """Render trusted enum values as an SQL list literal (matches the partial indexes' predicates)."""
    return "(" + ",".join(f"'{v}'" for v in sorted(s.value for s in values)) + ")"


_ACTIVE_SQL: Final = _in_list(ACTIVE_STATUSES)
_IN_FLIGHT_SQL: Final = _in_list(IN_FLIGHT_STATUSES)
_TERMINAL_SQL: Final = _in_list(TERMINAL_STATUSES)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _owner_key(kind: str, value: int) -> int:
    """A signed 64-bit advisory lock key for a guild or a member."""
    digest = hashlib.blake2b(f"comfy-imagine {kind} {value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _runnable_exists(alias: str, owner: str, models: Collection[str], param: str) -> str:
    """An SQL condition: the owner has a queued job a backend can run (`param`: its model names).

    One probe per model shape, each an index seek on idx_jobs_queued_model that stops at the first
    row. Scalar subqueries with LIMIT on purpose: PostgreSQL may turn an EXISTS under OR into a
    hashed subplan that reads every queued job on each claim.
    """
    base = f"SELECT 1 FROM jobs AS {alias} WHERE {alias}.status = 'queued' AND {owner}"
    tests = [f"({base} AND {alias}.model IS NULL LIMIT 1) IS NOT NULL"]
    if models:
        tests.append(f"({base} AND {alias}.model = ANY({param}::text[]) LIMIT 1) IS NOT NULL")
    return " AND (" + " OR ".join(tests) + ")"


def _pick_sql(models: Collection[str] | None, param: str = "$1") -> str:
    """The query naming the fairest runnable queued job (see `PostgresJobStore.claim_next`).

    `param` is the placeholder of the model names, when `models` has any.
    """
    guild_runnable = user_runnable = job_runnable = ""
    if models is not None:
        guild_runnable = _runnable_exists("jg", "jg.guild_id = g.guild_id", models, param)
        owner = "ju.guild_id = u.guild_id AND ju.user_id = u.user_id"
        user_runnable = _runnable_exists("ju", owner, models, param)
        job_runnable = " AND j.model IS NULL"
        if models:
            job_runnable = f" AND (j.model IS NULL OR j.model = ANY({param}::text[]))"
    return f"""
        WITH next_guild AS (
            SELECT g.guild_id FROM dispatch_guilds AS g
            WHERE g.waiting > 0{guild_runnable}
            ORDER BY g.served_seq, g.joined_seq LIMIT 1
        ), next_user AS (
            SELECT u.guild_id, u.user_id FROM dispatch_users AS u
            WHERE u.guild_id = (SELECT guild_id FROM next_guild) AND u.waiting > 0{user_runnable}
            ORDER BY u.served_seq, u.joined_seq LIMIT 1
        )
        SELECT j.id FROM jobs AS j
        WHERE j.status = 'queued'
          AND j.guild_id = (SELECT guild_id FROM next_user)
          AND j.user_id = (SELECT user_id FROM next_user){job_runnable}
        ORDER BY j.queued_at, j.id LIMIT 1
    """


def _claim_sql(models: Collection[str] | None) -> str:
    """The single UPDATE that claims the fairest queued job ($1 backend, $2 prompt id, $3 now, $4 models).

    The trigger `jobs_served_on_claim` then stamps the guild and the member with a fresh dispatch
    counter value.
    """
    return f"""
        UPDATE jobs
        SET status = 'submitted', backend = $1, prompt_id = $2, submitted_at = $3, started_at = NULL,
            progress = 0
        WHERE status = 'queued' AND id = ({_pick_sql(models, "$4")})
        RETURNING *
    """


# Serialises claims, and makes the planner take an index wherever there is one for the rest of
# the claim transaction (PostgreSQL's counterpart of SQLite's INDEXED BY): on a table whose
# statistics are missing or skewed, a LIMIT 1 probe must not become a scan of the jobs' history.
_CLAIM_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock($1), set_config('enable_seqscan', 'off', true)"


def _claim_args(models: Collection[str] | None) -> list[Any]:
    """The `$4` argument of the claim and pick queries, when they have one."""
    return [sorted(set(models))] if models else []


_INSERT_JOB: Final = """
    INSERT INTO jobs (id, batch_id, guild_id, channel_id, user_id, kind, action, parent_job_id,
        parent_index, prompt, request_json, model, status_channel_id, status_message_id,
        image_prompt, created_at, queued_at)
    SELECT n.id, COALESCE($1::bigint, n.id), $2::bigint, $3::bigint, $4::bigint, $5::text, $6::text,
        $7::bigint, $8::integer, $9::text, $10::text, $11::text, $12::bigint, $13::bigint, $14::text,
        $15::double precision, $15::double precision
    FROM (SELECT nextval('jobs_id_seq') AS id) AS n
    RETURNING *
"""


def _status_filter(statuses: Collection[JobStatus] | None, first: int) -> tuple[str, list[Any]]:
    """`AND status = ANY($first)` and its argument, or nothing."""
    if statuses is None:
        return "", []
    return f" AND status = ANY(${first}::text[])", [sorted(JobStatus(s).value for s in statuses)]


def _connection_lost(exc: BaseException) -> bool:
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


def _job(row: asyncpg.Record) -> Job:
    return Job.from_row(row)


class PostgresJobStore:
    """The bot's PostgreSQL database: jobs, outputs, user settings and fair dispatch state.

    Same contract as `bot.store.JobStore` (see its docstring), for any number of processes: claims
    and limits are atomic across all of them (see this module's docstring for how). Calls from one
    process run concurrently on the pool's connections.

    Times are unix seconds as floats (UTC), from the injectable `clock`; ids are BIGINT and never
    reused. Status changes raise `InvalidTransition` or `JobNotFound` exactly like the SQLite store.
    """

    def __init__(self, pool: asyncpg.Pool, *, url: str = "", clock: Callable[[], float] = time.time) -> None:
        """Wrap an open pool on a migrated database; use `PostgresJobStore.open` instead."""
        self._pool = pool
        self._url = redact_url(url) if url else "?"
        self._secrets = _secrets_of(url)
        self._clock = clock
        self._closed = False
        # job id -> the progress this store last wrote for it, to skip updates that would change nothing
        # without a database round trip (dropped on every status change).
        self._written_progress: dict[int, float] = {}

    def __repr__(self) -> str:
        """Name the database without its password."""
        return f"<PostgresJobStore {self._url}{' closed' if self._closed else ''}>"

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float | None = None,
    ) -> PostgresJobStore:
        """Connect a pool to the database at `url` (`postgresql://user:password@host:port/db`) and migrate it.

        Raises `SchemaTooNew` if the database was written by a newer bot, `StoreUnavailable` when
        the server cannot be reached or refuses the login (the message names the URL without its
        password). `migrations` defaults to the package's own (`bot/migrations_pg`).
        """
        secrets = _secrets_of(url)
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
            failure = (
                f"cannot connect to {redact_url(url)}: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
            )
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
        log.debug("job store open at %s (schema version %d)", redact_url(url), version)
        return cls(pool, url=url, clock=clock)

    async def close(self) -> None:
        """Close the pool (waiting for calls in progress); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:
            self._pool.terminate()

    async def __aenter__(self) -> PostgresJobStore:
        """Use the store as `async with await PostgresJobStore.open(url) as store:`."""
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
        return await self._run(_schema_version, idempotent=True, transaction=False)

    # ------------------------------------------------------------------------------ plumbing

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
                lost = _connection_lost(exc)
                if not lost and not _rolled_back(exc):
                    raise
                unknown = lost and sent and not idempotent
                if unknown:
                    message = (
                        f"database {self._url}: the connection was lost while saving a change; "
                        f"it may or may not have been saved ({type(exc).__name__})"
                    )
                    raise StoreUnavailable(message, outcome_unknown=True) from exc
                if attempt == 2:
                    detail = _scrub(str(exc), self._secrets)
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

    async def _transition(
        self,
        con: asyncpg.Connection,
        job_id: int,
        target: JobStatus,
        sets: str,
        params: Sequence[Any],
        current: JobStatus | None = None,
    ) -> Job:
        """Move a job to `target` inside the caller's transaction; `sets` numbers its arguments from $3.

        The row is locked first (`FOR UPDATE`), so the check and the update see the same status.
        """
        self._written_progress.pop(job_id, None)
        if current is None:
            status = await con.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if status is None:
                raise JobNotFound(job_id)
            current = JobStatus(status)
        if not can_transition(current, target):
            raise InvalidTransition(job_id, current, target)
        row = await con.fetchrow(
            f"UPDATE jobs SET status = $2, {sets} "
            f"WHERE id = $1 AND status IN {_in_list(sources_of(target))} RETURNING *",
            job_id,
            target.value,
            *params,
        )
        if row is None:  # unreachable with the row locked; kept as the SQL half of the check
            raise InvalidTransition(job_id, current, target)
        return _job(row)

    # ------------------------------------------------------------------------------- enqueue

    async def enqueue_many(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Insert the jobs of one member command, atomically checking `limits` first.

        With limits, all jobs must belong to one guild and one user. The check and the insert share
        one transaction that holds advisory locks on the guild and the member, so concurrent
        commands (even from other processes) cannot both slip under a cap. Raises `LimitExceeded`
        (its text is fit for the member), `JobNotFound` for a missing parent job, `ValueError` for
        malformed jobs. The jobs form one batch: one command for the per-minute limit.
        """
        if not jobs:
            return []
        owners = {(job.guild_id, job.user_id) for job in jobs}
        if limits is not None and len(owners) != 1:
            raise ValueError("enqueue_many with limits takes the jobs of one user in one guild")
        for job in jobs:
            JobKind(job.kind)
            json.loads(job.request_json)
            if job.parent_index is not None and job.parent_index < 0:
                raise ValueError("parent_index must be >= 0")
        keys = {_owner_key("guild", guild_id) for guild_id, _ in owners}
        if limits is not None:
            keys |= {_owner_key("user", user_id) for _, user_id in owners}
        now = self._clock()

        async def work(con: asyncpg.Connection) -> list[Job]:
            # Sorted, so two transactions never wait for each other's keys in opposite orders.
            await con.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", sorted(keys))
            if limits is not None:
                guild_id, user_id = next(iter(owners))
                await self._check_limits(con, limits, guild_id, user_id, len(jobs), now)
            parents = sorted({job.parent_job_id for job in jobs if job.parent_job_id is not None})
            if parents:
                await con.execute("SELECT pg_advisory_xact_lock_shared($1)", _PARENTS_LOCK)
            for parent_id in parents:
                if await con.fetchval("SELECT 1 FROM jobs WHERE id = $1 FOR KEY SHARE", parent_id) is None:
                    raise JobNotFound(parent_id)
            created: list[Job] = []
            for job in jobs:
                row = await con.fetchrow(
                    _INSERT_JOB,
                    created[0].id if created else None,
                    job.guild_id,
                    job.channel_id,
                    job.user_id,
                    JobKind(job.kind).value,
                    job.action,
                    job.parent_job_id,
                    job.parent_index,
                    job.prompt,
                    job.request_json,
                    job.model,
                    job.channel_id if job.status_message_id is not None else None,
                    job.status_message_id,
                    getattr(job, "image_prompt", None),  # NewJob gains it with SQLite's migration 0002
                    now,
                )
                created.append(_job(row))
            return created

        created = await self._run(work, idempotent=False)
        log.info(
            "enqueued jobs %s for user %s in guild %s",
            [j.id for j in created],
            jobs[0].user_id,
            jobs[0].guild_id,
        )
        return created

    async def enqueue(self, job: NewJob, limits: EnqueueLimits | None = None) -> Job:
        """Enqueue one job; see `enqueue_many`."""
        return (await self.enqueue_many([job], limits))[0]

    async def _check_limits(
        self,
        con: asyncpg.Connection,
        limits: EnqueueLimits,
        guild_id: int,
        user_id: int,
        count: int,
        now: float,
    ) -> None:
        cap = limits.max_jobs_per_command
        if cap is not None and count > cap:
            raise LimitExceeded(
                LimitKind.MAX_JOBS_PER_COMMAND,
                cap,
                None,
                f"One command can make at most {_plural(cap, 'job')}; this one asked for {count}.",
            )
        cap = limits.per_user_per_minute
        if cap is not None:
            times = await self._command_times(con, user_id, now - RATE_WINDOW_S)
            if len(times) >= cap:
                # The command that must leave the window before one more fits.
                release = times[len(times) - cap] if cap > 0 else now + RATE_WINDOW_S
                retry = max(0.0, release + RATE_WINDOW_S - now)
                raise LimitExceeded(
                    LimitKind.PER_USER_PER_MINUTE,
                    cap,
                    retry,
                    f"Slow down: at most {_plural(cap, 'command')} a minute. "
                    f"Try again in {max(1, math.ceil(retry))} s.",
                )
        cap = limits.per_user_active
        if cap is not None:
            active = await self._count_active(con, guild_id, user_id)
            if active + count > cap:
                if active >= cap:
                    text = (
                        f"You already have {_plural(active, 'job')} waiting or running; "
                        f"the limit is {cap}. Wait for one to finish."
                    )
                else:
                    text = (
                        f"You have {_plural(active, 'job')} waiting or running and this command adds "
                        f"{count}; the limit is {cap}. Wait for one to finish, or ask for fewer."
                    )
                raise LimitExceeded(LimitKind.PER_USER_ACTIVE, cap, None, text)
        cap = limits.per_guild_queued
        if cap is not None:
            queued = await self._count_queued(con, guild_id)
            if queued + count > cap:
                if queued >= cap:
                    text = (
                        f"This server's queue is full: {_plural(queued, 'job')} waiting, "
                        f"the limit is {cap}. Try again once some have started."
                    )
                else:
                    text = (
                        f"This server's queue has room for {_plural(cap - queued, 'more job')} and "
                        f"this command adds {count}. Try again once some have started, or ask for fewer."
                    )
                raise LimitExceeded(LimitKind.PER_GUILD_QUEUED, cap, None, text)

    @staticmethod
    async def _command_times(con: asyncpg.Connection, user_id: int, since: float) -> list[float]:
        """Creation times of the user's commands (batches) after `since`, oldest first."""
        rows = await con.fetch(
            "SELECT MIN(created_at) AS at FROM jobs WHERE user_id = $1 AND created_at > $2 "
            "GROUP BY COALESCE(batch_id, id) ORDER BY at",
            user_id,
            since,
        )
        return [float(row["at"]) for row in rows]

    @staticmethod
    async def _count_active(con: asyncpg.Connection, guild_id: int, user_id: int) -> int:
        return int(
            await con.fetchval(
                f"SELECT COUNT(*) FROM jobs WHERE guild_id = $1 AND user_id = $2 AND status IN {_ACTIVE_SQL}",
                guild_id,
                user_id,
            )
        )

    @staticmethod
    async def _count_queued(con: asyncpg.Connection, guild_id: int) -> int:
        return int(
            await con.fetchval(
                "SELECT COUNT(*) FROM jobs WHERE guild_id = $1 AND status = 'queued'", guild_id
            )
        )

    async def count_active_for_user(self, guild_id: int, user_id: int) -> int:
        """Return how many of the user's jobs in the guild are queued, submitted or running."""
        return await self._run(
            lambda con: self._count_active(con, guild_id, user_id), idempotent=True, transaction=False
        )

    async def count_queued_for_guild(self, guild_id: int) -> int:
        """Return how many jobs wait in the guild's queue."""
        return await self._run(
            lambda con: self._count_queued(con, guild_id), idempotent=True, transaction=False
        )

    async def count_created_since(self, user_id: int, since: float) -> int:
        """Return how many commands (enqueue batches, any guild) the user issued after `since`."""
        times = await self._run(
            lambda con: self._command_times(con, user_id, since), idempotent=True, transaction=False
        )
        return len(times)

    # -------------------------------------------------------------------------------- claim

    async def claim_next(
        self,
        backend: str,
        models: Collection[str] | None = None,
        *,
        prompt_id_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> Job | None:
        """Atomically move the fairest queued job to `submitted` on `backend`, or return None.

        Fairness: round robin over guilds with waiting jobs (least recently served first), then
        over users inside the guild, FIFO per user, across every process sharing the database.
        `models` (None: no restriction) limits the pick to jobs whose model is one of them, or that
        have no model.

        The new ComfyUI prompt id is stored in the same statement, so it is committed before the
        caller posts the prompt: after a crash, `list_in_flight` finds it.
        """
        prompt_id = prompt_id_factory()
        claim, pick, extra = _claim_sql(models), _pick_sql(models), _claim_args(models)
        attempts = 0

        async def work(con: asyncpg.Connection) -> asyncpg.Record | None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # the first attempt may have committed just before its connection died
                row = await con.fetchrow("SELECT * FROM jobs WHERE prompt_id = $1", prompt_id)
                if row is not None:
                    return row
            await con.execute(_CLAIM_LOCK_SQL, _CLAIM_LOCK)
            for _ in range(_CLAIM_TRIES):
                row = await con.fetchrow(claim, backend, prompt_id, self._clock(), *extra)
                if row is not None or await con.fetchval(pick, *extra) is None:
                    return row
                # The picked job changed between the pick and the update (a cancel committed in
                # between); this statement sees it, so the next pick is another job.
            return None

        row = await self._run(work, idempotent=True)
        if row is None:
            return None
        job = _job(row)
        log.debug("claimed job %d (guild %d, user %d) for %s", job.id, job.guild_id, job.user_id, backend)
        return job

    async def explain_claim(self, models: Collection[str] | None = None) -> list[str]:
        """Return PostgreSQL's plan lines for `claim_next`'s UPDATE (diagnostics; tests assert indexes)."""

        async def work(con: asyncpg.Connection) -> list[str]:
            await con.execute("SELECT set_config('enable_seqscan', 'off', true)")
            rows = await con.fetch("EXPLAIN " + _claim_sql(models), "", "", 0.0, *_claim_args(models))
            return [str(row[0]) for row in rows]

        return await self._run(work, idempotent=True)

    async def positions(self, guild_id: int) -> dict[int, int]:
        """Return {job_id: 1-based place} for the guild's queued jobs, in the order claims take them.

        Exact while every backend can run every model; a `models` restriction on `claim_next`
        can let a later job overtake one that no free backend can run.
        """
        order = await self._run(lambda con: self._guild_order(con, guild_id), idempotent=True, snapshot=True)
        return {job_id: place for place, job_id in enumerate(order, start=1)}

    async def position_of(self, job_id: int) -> int | None:
        """Return the job's 1-based place in its guild's queue, or None if it is not queued."""

        async def work(con: asyncpg.Connection) -> int | None:
            row = await con.fetchrow("SELECT guild_id, status FROM jobs WHERE id = $1", job_id)
            if row is None or row["status"] != JobStatus.QUEUED.value:
                return None
            order = await self._guild_order(con, int(row["guild_id"]))
            return order.index(job_id) + 1

        return await self._run(work, idempotent=True, snapshot=True)

    async def overall_position_of(self, job_id: int) -> int | None:
        """Return the job's 1-based place among all guilds' queued jobs, or None if not queued."""

        async def work(con: asyncpg.Connection) -> int | None:
            row = await con.fetchrow("SELECT guild_id, status FROM jobs WHERE id = $1", job_id)
            if row is None or row["status"] != JobStatus.QUEUED.value:
                return None
            guild_id = int(row["guild_id"])
            order = await self._guild_order(con, guild_id)
            guilds = await con.fetch(
                "SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0 ORDER BY served_seq, joined_seq"
            )
            ranks = [int(g["guild_id"]) for g in guilds]
            counts = [int(g["waiting"]) for g in guilds]
            return overall_position(order.index(job_id) + 1, ranks.index(guild_id), counts)

        return await self._run(work, idempotent=True, snapshot=True)

    @staticmethod
    async def _guild_order(con: asyncpg.Connection, guild_id: int) -> list[int]:
        """The guild's queued job ids in the order `claim_next` will take them."""
        users = await con.fetch(
            "SELECT user_id FROM dispatch_users WHERE guild_id = $1 AND waiting > 0 "
            "ORDER BY served_seq, joined_seq",
            guild_id,
        )
        jobs = await con.fetch(
            "SELECT id, user_id FROM jobs WHERE guild_id = $1 AND status = 'queued' "
            "ORDER BY user_id, queued_at, id",
            guild_id,
        )
        per_user: dict[int, list[int]] = {}
        for row in jobs:
            per_user.setdefault(int(row["user_id"]), []).append(int(row["id"]))
        return round_robin([per_user.get(int(row["user_id"]), []) for row in users])

    # ---------------------------------------------------------------------------- lifecycle

    async def get(self, job_id: int) -> Job | None:
        """Return the job, or None if it does not exist."""
        rows = await self._fetch("SELECT * FROM jobs WHERE id = $1", job_id)
        return _job(rows[0]) if rows else None

    async def get_by_prompt_id(self, prompt_id: str) -> Job | None:
        """Return the job that owns this ComfyUI prompt id, or None."""
        rows = await self._fetch("SELECT * FROM jobs WHERE prompt_id = $1", prompt_id)
        return _job(rows[0]) if rows else None

    async def set_prompt_id(self, job_id: int, prompt_id: str) -> Job:
        """Replace a submitted job's prompt id (before re-posting it); only while `submitted`."""

        async def work(con: asyncpg.Connection) -> Job:
            row = await con.fetchrow(
                "UPDATE jobs SET prompt_id = $1 WHERE id = $2 AND status = 'submitted' RETURNING *",
                prompt_id,
                job_id,
            )
            if row is not None:
                return _job(row)
            status = await con.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
            if status is None:
                raise JobNotFound(job_id)
            raise InvalidTransition(job_id, JobStatus(status), JobStatus.SUBMITTED)

        return await self._run(work, idempotent=True)

    async def mark_running(self, job_id: int) -> Job:
        """Record that ComfyUI started executing the job (idempotent while running)."""

        async def work(con: asyncpg.Connection) -> Job:
            row = await con.fetchrow("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if row is None:
                raise JobNotFound(job_id)
            if row["status"] == JobStatus.RUNNING.value:
                return _job(row)
            return await self._transition(
                con, job_id, JobStatus.RUNNING, "started_at = $3", [self._clock()], JobStatus(row["status"])
            )

        return await self._run(work, idempotent=True)

    async def update_progress(self, job_id: int, progress: float) -> None:
        """Record progress (0..1) of a submitted or running job; ignored for any other status.

        Cheap on purpose: the row is only written when the value moved by at least
        `PROGRESS_WRITE_STEP`, reached 1, or went backwards (a second sampler pass). Stored
        progress is for `/queue` and restarts; live progress travels through scheduler events.
        """
        value = clamp_progress(progress)
        last = self._written_progress.get(job_id)
        if last is not None and value < 1.0 and last <= value < last + PROGRESS_WRITE_STEP:
            return  # the UPDATE's own condition would leave the row as it is

        async def work(con: asyncpg.Connection) -> str:
            return str(
                await con.execute(
                    f"UPDATE jobs SET progress = $1 WHERE id = $2 AND status IN {_IN_FLIGHT_SQL} "
                    "AND (abs(progress - $1) >= $3 OR $1 >= 1.0 OR $1 < progress)",
                    value,
                    job_id,
                    PROGRESS_WRITE_STEP,
                )
            )

        if await self._run(work, idempotent=True, transaction=False) != "UPDATE 0":
            self._written_progress[job_id] = value

    async def complete(self, job_id: int, outputs: Sequence[OutputFile]) -> Job:
        """Mark the job completed and store its outputs (index = list position), atomically."""
        now = self._clock()

        async def work(con: asyncpg.Connection) -> Job:
            job = await self._transition(
                con, job_id, JobStatus.COMPLETED, "progress = 1, error = NULL, finished_at = $3", [now]
            )
            await con.execute(
                "INSERT INTO job_outputs (job_id, idx, path, width, height, bytes, created_at) "
                "SELECT $1, o.n - 1, o.path, o.width, o.height, o.bytes, $2 FROM unnest("
                "$3::text[], $4::integer[], $5::integer[], $6::bigint[]) WITH ORDINALITY "
                "AS o(path, width, height, bytes, n)",
                job_id,
                now,
                [o.path for o in outputs],
                [o.width for o in outputs],
                [o.height for o in outputs],
                [o.bytes for o in outputs],
            )
            return job

        job = await self._run(work, idempotent=False)
        log.info("job %d completed with %d outputs", job_id, len(outputs))
        return job

    async def fail(self, job_id: int, error: str) -> Job:
        """Mark the job failed with an error text (queued, submitted or running jobs)."""
        now = self._clock()
        job = await self._run(
            lambda con: self._transition(
                con, job_id, JobStatus.FAILED, "error = $3, finished_at = $4", [error, now]
            ),
            idempotent=False,
        )
        log.info("job %d failed: %s", job_id, error)
        return job

    async def cancel(self, job_id: int) -> JobStatus:
        """Cancel the job and return its previous status.

        The previous status tells the caller what to undo: `queued` needs nothing, `submitted`
        or `running` means ComfyUI must drop or interrupt the prompt.
        """
        now = self._clock()

        async def work(con: asyncpg.Connection) -> JobStatus:
            status = await con.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if status is None:
                raise JobNotFound(job_id)
            previous = JobStatus(status)
            await self._transition(con, job_id, JobStatus.CANCELLED, "finished_at = $3", [now], previous)
            return previous

        previous = await self._run(work, idempotent=False)
        log.info("job %d cancelled (was %s)", job_id, previous.value)
        return previous

    async def requeue(self, job_id: int, reason: str) -> Job:
        """Put a submitted or running job back in the queue (its backend died or went away).

        The job keeps its original `queued_at`, so it is its user's next job again; `attempts`
        grows by one, `reason` is kept in `error`, backend and prompt id are cleared (the next
        claim chooses new ones).
        """
        job = await self._run(
            lambda con: self._transition(
                con,
                job_id,
                JobStatus.QUEUED,
                "attempts = attempts + 1, error = $3, backend = NULL, prompt_id = NULL, "
                "progress = 0, submitted_at = NULL, started_at = NULL",
                [reason],
            ),
            idempotent=False,
        )
        log.info("job %d requeued (attempt %d): %s", job_id, job.attempts, reason)
        return job

    async def set_status_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that shows the job's queue position and progress."""
        await self._set_columns(
            job_id, "status_channel_id = $2, status_message_id = $3", channel_id, message_id
        )

    async def set_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that carries the job's images and buttons."""
        await self._set_columns(
            job_id, "result_channel_id = $2, result_message_id = $3", channel_id, message_id
        )

    async def _set_columns(self, job_id: int, sets: str, *params: Any) -> None:
        rows = await self._run(
            lambda con: con.fetch(f"UPDATE jobs SET {sets} WHERE id = $1 RETURNING id", job_id, *params),
            idempotent=True,
            transaction=False,
        )
        if not rows:
            raise JobNotFound(job_id)

    # -------------------------------------------------------------------------------- reads

    async def queue_snapshot(self) -> QueueSnapshot:
        """Active jobs by status and queued jobs per guild (from the dispatch counters and an index)."""

        async def work(con: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            queued = await con.fetch("SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0")
            in_flight = await con.fetch(
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE status IN {_IN_FLIGHT_SQL} GROUP BY status"
            )
            return queued, in_flight

        queued, in_flight = await self._run(work, idempotent=True, snapshot=True)
        by_guild = {int(row["guild_id"]): int(row["waiting"]) for row in queued}
        counts = {row["status"]: int(row["n"]) for row in in_flight}
        by_status = {status.value: counts.get(status.value, 0) for status in sorted(ACTIVE_STATUSES)}
        by_status[JobStatus.QUEUED.value] = sum(by_guild.values())
        return QueueSnapshot(by_status=by_status, queued_by_guild=by_guild)

    async def request_jsons_mentioning(self, needle: str) -> list[str]:
        """The request_json of every job whose request contains `needle` (a scan; for hourly upkeep)."""
        rows = await self._fetch("SELECT request_json FROM jobs WHERE strpos(request_json, $1) > 0", needle)
        return [str(row["request_json"]) for row in rows]

    async def list_in_flight(self) -> list[Job]:
        """Return submitted and running jobs, oldest first (for restart reconciliation)."""
        rows = await self._fetch(f"SELECT * FROM jobs WHERE status IN {_IN_FLIGHT_SQL} ORDER BY id")
        return [_job(row) for row in rows]

    async def list_guild_jobs(
        self,
        guild_id: int,
        statuses: Collection[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Return the guild's jobs, newest first, optionally only some statuses."""
        where, params = _status_filter(statuses, 4)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE guild_id = $1{where} ORDER BY id DESC LIMIT $2 OFFSET $3",
            guild_id,
            limit,
            offset,
            *params,
        )
        return [_job(row) for row in rows]

    async def list_user_jobs(
        self,
        user_id: int,
        guild_id: int | None = None,
        statuses: Collection[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Return the user's jobs (in one guild, or everywhere), newest first."""
        where, params = _status_filter(statuses, 4)
        if guild_id is not None:
            where += f" AND guild_id = ${4 + len(params)}"
            params.append(guild_id)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE user_id = $1{where} ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
            *params,
        )
        return [_job(row) for row in rows]

    async def cancellable_jobs(
        self, guild_id: int, user_id: int | None, query: str, limit: int = 25
    ) -> list[Job]:
        """Return active jobs in the guild (only the user's, unless None) matching `query`.

        For /cancel autocomplete: the query matches anywhere in the prompt (case-insensitive for
        ASCII, like SQLite's LIKE) or the start of the job id (a leading '#' is ignored). Newest first.
        """
        text = query.strip()
        pattern = ("%" + re.sub(r"([\\%_])", r"\\\1", text) + "%").translate(_ASCII_LOWER)
        id_pattern = re.sub(r"([\\%_])", r"\\\1", text.removeprefix("#")) + "%"
        where = ""
        params: list[Any] = []
        if user_id is not None:
            where = " AND user_id = $5"
            params.append(user_id)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE guild_id = $1{where} AND status IN {_ACTIVE_SQL} "
            f"AND ({_SQL_ASCII_LOWER} LIKE $2 ESCAPE '\\' OR id::text LIKE $3 ESCAPE '\\') "
            "ORDER BY id DESC LIMIT $4",
            guild_id,
            pattern,
            id_pattern,
            limit,
            *params,
        )
        return [_job(row) for row in rows]

    async def outputs(self, job_id: int) -> list[JobOutput]:
        """Return the job's outputs in index order."""
        rows = await self._fetch("SELECT * FROM job_outputs WHERE job_id = $1 ORDER BY idx", job_id)
        return [
            JobOutput(
                job_id=int(r["job_id"]),
                idx=int(r["idx"]),
                path=str(r["path"]),
                width=int(r["width"]),
                height=int(r["height"]),
                bytes=int(r["bytes"]),
                created_at=float(r["created_at"]),
            )
            for r in rows
        ]

    async def stats(self, guild_id: int, since: float) -> GuildStats:
        """Count the guild's jobs that finished since `since`, and what waits or runs now."""

        async def work(con: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            finished = await con.fetch(
                "SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = $1 AND finished_at >= $2 "
                "GROUP BY status",
                guild_id,
                since,
            )
            active = await con.fetch(
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = $1 AND status IN {_ACTIVE_SQL} "
                "GROUP BY status",
                guild_id,
            )
            return finished, active

        finished, active = await self._run(work, idempotent=True, snapshot=True)
        done = {row["status"]: int(row["n"]) for row in finished}
        now = {row["status"]: int(row["n"]) for row in active}
        return GuildStats(
            completed=done.get(JobStatus.COMPLETED.value, 0),
            failed=done.get(JobStatus.FAILED.value, 0),
            cancelled=done.get(JobStatus.CANCELLED.value, 0),
            waiting=now.get(JobStatus.QUEUED.value, 0),
            in_flight=sum(now.get(s.value, 0) for s in IN_FLIGHT_STATUSES),
        )

    # ----------------------------------------------------------------------------- settings

    async def get_user_settings(self, user_id: int) -> UserSettings | None:
        """Return the member's saved settings, or None if they never saved any."""
        rows = await self._fetch("SELECT * FROM user_settings WHERE user_id = $1", user_id)
        return self._settings_from_row(rows[0]) if rows else None

    async def update_user_settings(
        self,
        user_id: int,
        *,
        model: str | _Unset | None = UNSET,
        aspect: str | _Unset | None = UNSET,
        style: str | _Unset | None = UNSET,
        negative: str | _Unset | None = UNSET,
    ) -> UserSettings:
        """Change some of the member's settings (None clears one; omitted ones stay)."""
        changes = {
            name: value
            for name, value in zip(_SETTING_FIELDS, (model, aspect, style, negative), strict=True)
            if value is not UNSET
        }
        values = {name: None for name in _SETTING_FIELDS} | changes
        updates = "".join(f"{name} = excluded.{name}, " for name in changes)
        sql = (
            "INSERT INTO user_settings (user_id, model, aspect, style, negative, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}updated_at = excluded.updated_at RETURNING *"
        )
        now = self._clock()
        row = await self._run(
            lambda con: con.fetchrow(sql, user_id, *(values[name] for name in _SETTING_FIELDS), now),
            idempotent=True,
            transaction=False,
        )
        return self._settings_from_row(row)

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        rows = await self._run(
            lambda con: con.fetch("DELETE FROM user_settings WHERE user_id = $1 RETURNING user_id", user_id),
            idempotent=False,
        )
        return bool(rows)

    @staticmethod
    def _settings_from_row(row: asyncpg.Record) -> UserSettings:
        return UserSettings(
            user_id=int(row["user_id"]),
            model=row["model"],
            aspect=row["aspect"],
            style=row["style"],
            negative=row["negative"],
            updated_at=float(row["updated_at"]),
        )

    # ---------------------------------------------------------------------------- retention

    async def purge_finished_before(self, ts: float) -> list[str]:
        """Delete terminal jobs that finished before `ts`, with their output rows.

        Jobs with a child that is still queued or on a backend are kept (the child needs the
        parent's image). Returns the deleted output paths, for the caller to remove from disk.
        Children of deleted jobs keep existing with `parent_job_id` set to NULL.
        """
        doomed = (
            f"j.finished_at < $1 AND j.status IN {_TERMINAL_SQL} AND NOT EXISTS ("
            f"SELECT 1 FROM jobs AS c WHERE c.parent_job_id = j.id AND c.status IN {_ACTIVE_SQL})"
        )

        async def work(con: asyncpg.Connection) -> list[asyncpg.Record]:
            # Waits for enqueues of child jobs in progress (they hold this lock shared), so the
            # statement below sees every child committed before it; later ones find no parent.
            await con.execute("SELECT pg_advisory_xact_lock($1)", _PARENTS_LOCK)
            # One statement: the paths are those of exactly the rows it deletes (the CTE reads
            # job_outputs as it was before the cascade).
            return list(
                await con.fetch(
                    f"WITH gone AS (DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs AS j WHERE {doomed}) "
                    "RETURNING id) SELECT g.id, o.path FROM gone AS g "
                    "LEFT JOIN job_outputs AS o ON o.job_id = g.id ORDER BY g.id, o.idx",
                    ts,
                )
            )

        rows = await self._run(work, idempotent=False)
        paths = [str(row["path"]) for row in rows if row["path"] is not None]
        deleted = {int(row["id"]) for row in rows}
        if deleted:
            log.info("purged %d finished jobs (%d output files)", len(deleted), len(paths))
        return paths

    async def completed_without_result_message(self, since: float, until: float | None = None) -> list[Job]:
        """Completed jobs with a status message but no recorded result message, finished since `since`
        (and before `until`, if given).

        These are results the bot never got to show (it stopped between saving and posting them, or
        Discord refused them).
        """
        rows = await self._fetch(
            "SELECT * FROM jobs WHERE status = 'completed' AND result_message_id IS NULL "
            "AND status_message_id IS NOT NULL AND finished_at >= $1 AND finished_at < $2 ORDER BY id",
            since,
            math.inf if until is None else until,
        )
        return [_job(row) for row in rows]

    async def finished_output_bytes(self) -> list[tuple[float, int]]:
        """(finished_at, output bytes) of every finished job with outputs, oldest first (for a size cap)."""
        rows = await self._fetch(
            "SELECT j.finished_at AS finished_at, SUM(o.bytes) AS size FROM jobs AS j "
            f"JOIN job_outputs AS o ON o.job_id = j.id WHERE j.status IN {_TERMINAL_SQL} "
            "GROUP BY j.id ORDER BY j.finished_at, j.id"
        )
        return [(float(row["finished_at"] or 0.0), int(row["size"] or 0)) for row in rows]

    # --------------------------------------------------------------------------- copy-store

    async def is_empty(self) -> bool:
        """Whether the database holds no jobs, outputs, settings or dispatch state (a copy may start)."""
        return bool(
            await self._run(
                lambda con: con.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM jobs) AND NOT EXISTS (SELECT 1 FROM job_outputs) "
                    "AND NOT EXISTS (SELECT 1 FROM user_settings) AND NOT EXISTS (SELECT 1 FROM dispatch_guilds)"
                ),
                idempotent=True,
                transaction=False,
            )
        )

    async def import_rows(
        self,
        jobs: Iterable[Job],
        outputs: Iterable[JobOutput] = (),
        settings: Iterable[UserSettings] = (),
        *,
        guild_order: Iterable[tuple[int, int, int]] = (),
        user_order: Iterable[tuple[int, int, int, int]] = (),
        last_id: int = 0,
    ) -> int:
        """Insert rows copied from another store, keeping their ids, in one transaction; return the job count.

        For `copy-store`. Jobs keep every column (their ids too; parents must come with or before
        their children, as ids order them). The triggers count the queued jobs; the round-robin
        state comes from `guild_order` (guild_id, served_seq, joined_seq) and `user_order`
        (guild_id, user_id, served_seq, joined_seq), the rows of the source's dispatch tables,
        so claims continue in exactly the order the source would have used. `last_id` is the
        highest id the source ever handed out (SQLite's `sqlite_sequence`): the id sequence is
        moved past it and past every imported id (see `reset_id_sequence`), so no id is reused.
        Raises asyncpg's UniqueViolationError if an id is already taken (nothing is imported).
        """
        job_rows = sorted(jobs, key=lambda job: job.id)
        columns = list(Job.__slots__)
        records = [
            tuple(
                job.kind.value
                if name == "kind"
                else job.status.value
                if name == "status"
                else getattr(job, name)
                for name in columns
            )
            for job in job_rows
        ]
        output_records = [
            (o.job_id, o.idx, o.path, o.width, o.height, o.bytes, o.created_at) for o in outputs
        ]
        setting_records = [
            (s.user_id, s.model, s.aspect, s.style, s.negative, s.updated_at) for s in settings
        ]
        guilds, users = list(guild_order), list(user_order)

        async def work(con: asyncpg.Connection) -> None:
            # Row triggers fire for COPY too: the waiting counts are built as the jobs arrive.
            await con.copy_records_to_table("jobs", records=records, columns=columns)
            await con.copy_records_to_table(
                "job_outputs",
                records=output_records,
                columns=["job_id", "idx", "path", "width", "height", "bytes", "created_at"],
            )
            await con.copy_records_to_table(
                "user_settings",
                records=setting_records,
                columns=["user_id", "model", "aspect", "style", "negative", "updated_at"],
            )
            await con.executemany(
                "INSERT INTO dispatch_guilds AS g (guild_id, served_seq, joined_seq) VALUES ($1, $2, $3) "
                "ON CONFLICT (guild_id) DO UPDATE SET served_seq = excluded.served_seq, "
                "joined_seq = excluded.joined_seq",
                guilds,
            )
            await con.executemany(
                "INSERT INTO dispatch_users AS u (guild_id, user_id, served_seq, joined_seq) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (guild_id, user_id) DO UPDATE SET "
                "served_seq = excluded.served_seq, joined_seq = excluded.joined_seq",
                users,
            )
            await con.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)  # no claim meanwhile
            served = max([row[1] for row in guilds] + [row[2] for row in users] + [0])
            await con.execute(
                "SELECT setval('dispatch_served_seq', $1) FROM dispatch_served_seq "
                "WHERE $1 > CASE WHEN is_called THEN last_value ELSE 0 END",
                served,
            )
            await self._reset_id_sequence(con, last_id)

        await self._run(work, idempotent=False)
        log.info(
            "imported %d jobs, %d outputs, %d settings",
            len(records),
            len(output_records),
            len(setting_records),
        )
        return len(records)

    async def reset_id_sequence(self, at_least: int = 0) -> int:
        """Move the job id sequence past every stored id and `at_least`; never backwards. Return the last id.

        The next job gets an id above the returned one. Needed after rows were inserted with
        their own ids (`import_rows` calls it; so must anything else that does that).
        """
        return await self._run(lambda con: self._reset_id_sequence(con, at_least), idempotent=True)

    @staticmethod
    async def _reset_id_sequence(con: asyncpg.Connection, at_least: int) -> int:
        # Inserting into jobs needs a lock this one excludes, so no id is handed out meanwhile.
        await con.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
        row = await con.fetchrow(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS used, "
            "(SELECT COALESCE(max(id), 0) FROM jobs) AS stored FROM jobs_id_seq"
        )
        last = max(int(row["used"]), int(row["stored"]), at_least)
        if last > int(row["used"]):
            await con.execute("SELECT setval('jobs_id_seq', $1)", last)
        return last

    async def total_output_bytes(self) -> int:
        """Return the summed size of all stored outputs."""
        rows = await self._fetch("SELECT COALESCE(SUM(bytes), 0) FROM job_outputs")
        return int(rows[0][0])
