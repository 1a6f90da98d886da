"""SQLite job store: persistent per-guild queues, fair claiming, limits, results and retention."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiosqlite

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

log = logging.getLogger(__name__)

RATE_WINDOW_S: Final = 60.0
# update_progress skips the write when the stored value is within this step (see its docstring).
PROGRESS_WRITE_STEP: Final = 0.05

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the bot than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database schema is version {found}, but this version of the bot only knows up to "
            f"{known}; run the newer bot again or restore a backup taken before the upgrade"
        )
        self.found = found
        self.known = known


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL migration file."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read `bot/migrations/NNNN_name.sql` (package data), numbered 1, 2, 3... without gaps."""
    folder: Traversable = resources.files("bot").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), match.group(2), sql))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps: {[m.version for m in found]}")
    return found


def _is_only_comments(sql: str) -> bool:
    code = (line for line in sql.splitlines() if not line.strip().startswith("--"))
    return not "".join(code).replace(";", "").strip()


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (trigger bodies stay whole, comments go)."""
    statements: list[str] = []
    pending = ""
    *pieces, tail = script.split(";")
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if not _is_only_comments(pending):
                statements.append(pending.strip())
            pending = ""
    pending += tail
    if not _is_only_comments(pending):
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending.strip()[:80]!r}")
    return statements


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = await db.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        await db.execute("ROLLBACK")
    except sqlite3.OperationalError:  # SQLite already rolled back (or never began)
        pass


async def apply_migrations(db: aiosqlite.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last migration, one transaction per migration.

    Returns the resulting `PRAGMA user_version`. Raises `SchemaTooNew` if the database is newer
    than the migrations, without touching it. Safe when two processes start at once: the version
    is re-read under the write lock.
    """
    latest = migrations[-1].version if migrations else 0
    by_version = {m.version: m for m in migrations}
    current = await _user_version(db)
    while True:
        if current > latest:
            raise SchemaTooNew(current, latest)
        if current == latest:
            return current
        await db.execute("BEGIN IMMEDIATE")
        try:
            current = await _user_version(db)
            step = by_version.get(current + 1)
            if step is not None:
                for statement in split_statements(step.sql):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {step.version:d}")
            await db.execute("COMMIT")
        except BaseException:
            await _rollback(db)
            raise
        if step is not None:
            log.info("database migrated to version %d (%s)", step.version, step.name)
            current = step.version


class _Unset(Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET

_SETTING_FIELDS: Final = ("model", "aspect", "style", "negative")


def _in_list(values: Iterable[Enum | str]) -> str:
    """Render trusted enum values as an SQL list literal, e.g. `('queued','running')`."""
    items = sorted(v.value if isinstance(v, Enum) else v for v in values)
    return "(" + ",".join(f"'{item}'" for item in items) + ")"


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


_ACTIVE_SQL: Final = _in_list(ACTIVE_STATUSES)
_IN_FLIGHT_SQL: Final = _in_list(IN_FLIGHT_STATUSES)
_TERMINAL_SQL: Final = _in_list(TERMINAL_STATUSES)


def _model_names(count: int) -> str:
    return ", ".join(f":m{i}" for i in range(count))


def _model_params(models: Collection[str] | None) -> dict[str, str]:
    """Bind the model names of a claim as `:m0, :m1, ...`."""
    return {f"m{i}": name for i, name in enumerate(sorted(set(models or ())))}


def _runnable_exists(alias: str, owner: str, models: Collection[str]) -> str:
    """An SQL condition: the owner (guild, or guild and user) has a queued job a backend can run.

    Written as separate EXISTS per model shape so each is an index seek on
    idx_jobs_queued_model (guild_id, model, user_id), however many jobs wait.
    """
    base = f"SELECT 1 FROM jobs AS {alias} INDEXED BY idx_jobs_queued_model WHERE {alias}.status = 'queued'"
    tests = [f"EXISTS ({base} AND {owner} AND {alias}.model IS NULL)"]
    if models:
        tests.append(f"EXISTS ({base} AND {owner} AND {alias}.model IN ({_model_names(len(set(models)))}))")
    return " AND (" + " OR ".join(tests) + ")"


def _claim_sql(models: Collection[str] | None) -> str:
    """The single UPDATE that claims the fairest queued job.

    Guild with the oldest service among guilds with waiting (runnable) jobs, then the user with
    the oldest service in that guild, then that user's oldest (runnable) job. The trigger
    `jobs_served_on_claim` then stamps both with a fresh dispatch counter value. INDEXED BY
    pins the plans: an unanalysed database must not fall back to scanning a guild's history.
    """
    guild_runnable = user_runnable = job_runnable = ""
    if models is not None:
        guild_runnable = _runnable_exists("jg", "jg.guild_id = g.guild_id", models)
        user_runnable = _runnable_exists("ju", "ju.guild_id = u.guild_id AND ju.user_id = u.user_id", models)
        job_runnable = " AND (j.model IS NULL"
        job_runnable += f" OR j.model IN ({_model_names(len(set(models)))}))" if models else ")"
    return f"""
        UPDATE jobs
        SET status = 'submitted', backend = :backend, prompt_id = :prompt_id,
            submitted_at = :now, started_at = NULL, progress = 0
        WHERE status = 'queued' AND id = (
            WITH next_guild AS (
                SELECT g.guild_id FROM dispatch_guilds AS g INDEXED BY idx_dispatch_guilds_next
                WHERE g.waiting > 0{guild_runnable}
                ORDER BY g.served_seq, g.joined_seq LIMIT 1
            ), next_user AS (
                SELECT u.guild_id, u.user_id FROM dispatch_users AS u INDEXED BY idx_dispatch_users_next
                WHERE u.guild_id = (SELECT guild_id FROM next_guild) AND u.waiting > 0{user_runnable}
                ORDER BY u.served_seq, u.joined_seq LIMIT 1
            )
            SELECT j.id FROM jobs AS j INDEXED BY idx_jobs_queued
            WHERE j.status = 'queued'
              AND j.guild_id = (SELECT guild_id FROM next_user)
              AND j.user_id = (SELECT user_id FROM next_user){job_runnable}
            ORDER BY j.queued_at, j.id LIMIT 1
        )
        RETURNING *
    """


class JobStore:
    """The bot's SQLite database: jobs, outputs, user settings and fair dispatch state.

    One connection, used by one asyncio loop; every call is serialised by an asyncio lock so
    coroutines never interleave inside a transaction. Other processes (or stores) may open the
    same file: writes take `BEGIN IMMEDIATE` and wait up to the busy timeout.

    Times are unix seconds as floats (UTC), from the injectable `clock`.

    Status changes raise `InvalidTransition` when the job's current status does not allow them,
    which covers both bugs and lost races (a member cancelled while the scheduler was about to
    mark the job running): the exception's `current` says what happened. They raise
    `JobNotFound` when the row does not exist.
    """

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an open, migrated connection; use `JobStore.open` instead."""
        self._db = db
        self._clock = clock
        self._lock = asyncio.Lock()
        self._closed = False
        # job id -> the progress this store last wrote for it, to skip updates that would change nothing
        # without a database round trip (dropped on every status change).
        self._written_progress: dict[int, float] = {}

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 5.0,
        migrations: Sequence[Migration] | None = None,
    ) -> JobStore:
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

    async def __aenter__(self) -> JobStore:
        """Use the store as `async with await JobStore.open(path) as store:`."""
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
            return await _user_version(self._db)

    # ------------------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise with other calls and run the body in one write transaction."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                await _rollback(self._db)
                raise

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise with other calls; several reads see one consistent state."""
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                await _rollback(self._db)

    async def _fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    @staticmethod
    async def _rows(
        db: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[sqlite3.Row]:
        return list(await db.execute_fetchall(sql, params))

    async def _transition(
        self,
        job_id: int,
        target: JobStatus,
        sets: str,
        params: dict[str, Any],
        db: aiosqlite.Connection,
    ) -> Job:
        """Move a job to `target` inside the caller's transaction; checked twice (see class doc)."""
        self._written_progress.pop(job_id, None)
        rows = await self._rows(db, "SELECT status FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFound(job_id)
        current = JobStatus(rows[0]["status"])
        if not can_transition(current, target):
            raise InvalidTransition(job_id, current, target)
        rows = await self._rows(
            db,
            f"UPDATE jobs SET status = :target, {sets} "
            f"WHERE id = :job_id AND status IN {_in_list(sources_of(target))} RETURNING *",
            {**params, "target": target.value, "job_id": job_id},
        )
        if not rows:  # unreachable inside BEGIN IMMEDIATE; kept as the SQL half of the check
            raise InvalidTransition(job_id, current, target)
        return Job.from_row(rows[0])

    # ------------------------------------------------------------------------------- enqueue

    async def enqueue_many(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Insert the jobs of one member command, atomically checking `limits` first.

        With limits, all jobs must belong to one guild and one user. The check and the insert
        share one `BEGIN IMMEDIATE` transaction, so concurrent commands (even from another
        process) cannot both slip under a cap. Raises `LimitExceeded` (with the facts of the broken
        cap), `JobNotFound` for a missing parent job, `ValueError` for malformed jobs.
        The jobs form one batch: one command for the per-minute limit.
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
        now = self._clock()
        async with self._transaction() as db:
            if limits is not None:
                guild_id, user_id = next(iter(owners))
                await self._check_limits(db, limits, guild_id, user_id, len(jobs), now)
            parents = {job.parent_job_id for job in jobs if job.parent_job_id is not None}
            for parent_id in parents:
                if not await self._rows(db, "SELECT 1 FROM jobs WHERE id = ?", (parent_id,)):
                    raise JobNotFound(parent_id)
            ids: list[int] = []
            for job in jobs:
                rows = await self._rows(
                    db,
                    """
                    INSERT INTO jobs (batch_id, guild_id, channel_id, user_id, kind, action,
                        parent_job_id, parent_index, prompt, request_json, model,
                        status_channel_id, status_message_id, created_at, queued_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    RETURNING id
                    """,
                    (
                        ids[0] if ids else None,
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
                        now,
                        now,
                    ),
                )
                ids.append(int(rows[0]["id"]))
            await db.execute("UPDATE jobs SET batch_id = id WHERE id = ?", (ids[0],))
            rows = await self._rows(
                db, "SELECT * FROM jobs WHERE id BETWEEN ? AND ? ORDER BY id", (ids[0], ids[-1])
            )
        wanted = set(ids)
        created = [Job.from_row(row) for row in rows if row["id"] in wanted]
        log.info("enqueued jobs %s for user %s in guild %s", ids, jobs[0].user_id, jobs[0].guild_id)
        return created

    async def enqueue(self, job: NewJob, limits: EnqueueLimits | None = None) -> Job:
        """Enqueue one job; see `enqueue_many`."""
        return (await self.enqueue_many([job], limits))[0]

    async def _check_limits(
        self,
        db: aiosqlite.Connection,
        limits: EnqueueLimits,
        guild_id: int,
        user_id: int,
        count: int,
        now: float,
    ) -> None:
        cap = limits.max_jobs_per_command
        if cap is not None and count > cap:
            raise LimitExceeded(LimitKind.MAX_JOBS_PER_COMMAND, cap, requested=count)
        cap = limits.per_user_per_minute
        if cap is not None:
            times = await self._command_times(db, user_id, now - RATE_WINDOW_S)
            if len(times) >= cap:
                # The command that must leave the window before one more fits.
                release = times[len(times) - cap] if cap > 0 else now + RATE_WINDOW_S
                retry = max(0.0, release + RATE_WINDOW_S - now)
                raise LimitExceeded(
                    LimitKind.PER_USER_PER_MINUTE, cap, retry, requested=count, current=len(times)
                )
        cap = limits.per_user_active
        if cap is not None:
            active = await self._count_active(db, guild_id, user_id)
            if active + count > cap:
                raise LimitExceeded(LimitKind.PER_USER_ACTIVE, cap, requested=count, current=active)
        cap = limits.per_guild_queued
        if cap is not None:
            queued = await self._count_queued(db, guild_id)
            if queued + count > cap:
                raise LimitExceeded(LimitKind.PER_GUILD_QUEUED, cap, requested=count, current=queued)

    @staticmethod
    async def _command_times(db: aiosqlite.Connection, user_id: int, since: float) -> list[float]:
        """Creation times of the user's commands (batches) after `since`, oldest first."""
        rows = await db.execute_fetchall(
            "SELECT MIN(created_at) AS at FROM jobs WHERE user_id = ? AND created_at > ? "
            "GROUP BY COALESCE(batch_id, id) ORDER BY at",
            (user_id, since),
        )
        return [float(row["at"]) for row in rows]

    @staticmethod
    async def _count_active(db: aiosqlite.Connection, guild_id: int, user_id: int) -> int:
        rows = await db.execute_fetchall(
            f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND status IN {_ACTIVE_SQL}",
            (guild_id, user_id),
        )
        return int(next(iter(rows))[0])

    @staticmethod
    async def _count_queued(db: aiosqlite.Connection, guild_id: int) -> int:
        rows = await db.execute_fetchall(
            "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND status = 'queued'", (guild_id,)
        )
        return int(next(iter(rows))[0])

    async def count_active_for_user(self, guild_id: int, user_id: int) -> int:
        """Return how many of the user's jobs in the guild are queued, submitted or running."""
        async with self._lock:
            return await self._count_active(self._db, guild_id, user_id)

    async def count_queued_for_guild(self, guild_id: int) -> int:
        """Return how many jobs wait in the guild's queue."""
        async with self._lock:
            return await self._count_queued(self._db, guild_id)

    async def count_created_since(self, user_id: int, since: float) -> int:
        """Return how many commands (enqueue batches, any guild) the user issued after `since`."""
        async with self._lock:
            return len(await self._command_times(self._db, user_id, since))

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
        over users inside the guild, FIFO per user. `models` (None: no restriction) limits the
        pick to jobs whose model is one of them, or that have no model.

        The new ComfyUI prompt id is stored in the same statement, so it is on disk before the
        caller posts the prompt: after a crash, `list_in_flight` finds it and the scheduler can
        look it up in ComfyUI's /queue and /history instead of generating twice.
        """
        params = {
            **_model_params(models),
            "backend": backend,
            "prompt_id": prompt_id_factory(),
            "now": self._clock(),
        }
        rows = await self._fetch(_claim_sql(models), params)
        if not rows:
            return None
        job = Job.from_row(rows[0])
        log.debug("claimed job %d (guild %d, user %d) for %s", job.id, job.guild_id, job.user_id, backend)
        return job

    async def explain_claim(self, models: Collection[str] | None = None) -> list[str]:
        """Return SQLite's query plan lines for `claim_next` (diagnostics; tests assert indexes)."""
        params = {**_model_params(models), "backend": "", "prompt_id": "", "now": 0.0}
        rows = await self._fetch("EXPLAIN QUERY PLAN " + _claim_sql(models), params)
        return [str(row["detail"]) for row in rows]

    async def positions(self, guild_id: int) -> dict[int, int]:
        """Return {job_id: 1-based place} for the guild's queued jobs, in the order claims take them.

        Exact while every backend can run every model; a `models` restriction on `claim_next`
        can let a later job overtake one that no free backend can run.
        """
        async with self._snapshot() as db:
            order = await self._guild_order(db, guild_id)
        return {job_id: place for place, job_id in enumerate(order, start=1)}

    async def position_of(self, job_id: int) -> int | None:
        """Return the job's 1-based place in its guild's queue, or None if it is not queued."""
        async with self._snapshot() as db:
            rows = await self._rows(db, "SELECT guild_id, status FROM jobs WHERE id = ?", (job_id,))
            if not rows or rows[0]["status"] != JobStatus.QUEUED.value:
                return None
            order = await self._guild_order(db, int(rows[0]["guild_id"]))
        return order.index(job_id) + 1

    async def overall_position_of(self, job_id: int) -> int | None:
        """Return the job's 1-based place among all guilds' queued jobs, or None if not queued."""
        async with self._snapshot() as db:
            rows = await self._rows(db, "SELECT guild_id, status FROM jobs WHERE id = ?", (job_id,))
            if not rows or rows[0]["status"] != JobStatus.QUEUED.value:
                return None
            guild_id = int(rows[0]["guild_id"])
            order = await self._guild_order(db, guild_id)
            guilds = await self._rows(
                db,
                "SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0 "
                "ORDER BY served_seq, joined_seq",
            )
        ranks = [int(row["guild_id"]) for row in guilds]
        counts = [int(row["waiting"]) for row in guilds]
        return overall_position(order.index(job_id) + 1, ranks.index(guild_id), counts)

    @classmethod
    async def _guild_order(cls, db: aiosqlite.Connection, guild_id: int) -> list[int]:
        """The guild's queued job ids in the order `claim_next` will take them."""
        users = await cls._rows(
            db,
            "SELECT user_id FROM dispatch_users WHERE guild_id = ? AND waiting > 0 "
            "ORDER BY served_seq, joined_seq",
            (guild_id,),
        )
        jobs = await cls._rows(
            db,
            "SELECT id, user_id FROM jobs WHERE guild_id = ? AND status = 'queued' "
            "ORDER BY user_id, queued_at, id",
            (guild_id,),
        )
        per_user: dict[int, list[int]] = {}
        for row in jobs:
            per_user.setdefault(int(row["user_id"]), []).append(int(row["id"]))
        return round_robin([per_user.get(int(row["user_id"]), []) for row in users])

    # ---------------------------------------------------------------------------- lifecycle

    async def get(self, job_id: int) -> Job | None:
        """Return the job, or None if it does not exist."""
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    async def get_by_prompt_id(self, prompt_id: str) -> Job | None:
        """Return the job that owns this ComfyUI prompt id, or None."""
        rows = await self._fetch("SELECT * FROM jobs WHERE prompt_id = ?", (prompt_id,))
        return Job.from_row(rows[0]) if rows else None

    async def set_prompt_id(self, job_id: int, prompt_id: str) -> Job:
        """Replace a submitted job's prompt id (before re-posting it); only while `submitted`."""
        async with self._transaction() as db:
            rows = await self._rows(
                db,
                "UPDATE jobs SET prompt_id = ? WHERE id = ? AND status = 'submitted' RETURNING *",
                (prompt_id, job_id),
            )
            if rows:
                return Job.from_row(rows[0])
            current = await self._rows(db, "SELECT status FROM jobs WHERE id = ?", (job_id,))
        if not current:
            raise JobNotFound(job_id)
        raise InvalidTransition(job_id, JobStatus(current[0]["status"]), JobStatus.SUBMITTED)

    async def mark_running(self, job_id: int) -> Job:
        """Record that ComfyUI started executing the job (idempotent while running)."""
        async with self._transaction() as db:
            rows = await self._rows(db, "SELECT * FROM jobs WHERE id = ? AND status = 'running'", (job_id,))
            if rows:
                return Job.from_row(rows[0])
            return await self._transition(
                job_id, JobStatus.RUNNING, "started_at = :now", {"now": self._clock()}, db
            )

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
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE jobs SET progress = :p WHERE id = :id AND status IN {_IN_FLIGHT_SQL} "
                "AND (abs(progress - :p) >= :step OR :p >= 1.0 OR :p < progress)",
                {"p": value, "id": job_id, "step": PROGRESS_WRITE_STEP},
            )
            if cursor.rowcount:
                self._written_progress[job_id] = value

    async def complete(self, job_id: int, outputs: Sequence[OutputFile]) -> Job:
        """Mark the job completed and store its outputs (index = list position), atomically."""
        now = self._clock()
        async with self._transaction() as db:
            job = await self._transition(
                job_id,
                JobStatus.COMPLETED,
                "progress = 1, error = NULL, finished_at = :now",
                {"now": now},
                db,
            )
            await db.executemany(
                "INSERT INTO job_outputs (job_id, idx, path, width, height, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, i, o.path, o.width, o.height, o.bytes, now) for i, o in enumerate(outputs)],
            )
        log.info("job %d completed with %d outputs", job_id, len(outputs))
        return job

    async def fail(self, job_id: int, error: str) -> Job:
        """Mark the job failed with an error text (queued, submitted or running jobs)."""
        async with self._transaction() as db:
            job = await self._transition(
                job_id,
                JobStatus.FAILED,
                "error = :error, finished_at = :now",
                {"error": error, "now": self._clock()},
                db,
            )
        log.info("job %d failed: %s", job_id, error)
        return job

    async def cancel(self, job_id: int) -> JobStatus:
        """Cancel the job and return its previous status.

        The previous status tells the caller what to undo: `queued` needs nothing, `submitted`
        or `running` means ComfyUI must drop or interrupt the prompt.
        """
        async with self._transaction() as db:
            rows = await self._rows(db, "SELECT status FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise JobNotFound(job_id)
            previous = JobStatus(rows[0]["status"])
            await self._transition(
                job_id, JobStatus.CANCELLED, "finished_at = :now", {"now": self._clock()}, db
            )
        log.info("job %d cancelled (was %s)", job_id, previous.value)
        return previous

    async def requeue(self, job_id: int, reason: str) -> Job:
        """Put a submitted or running job back in the queue (its backend died or went away).

        The job keeps its original `queued_at`, so it is its user's next job again; `attempts`
        grows by one, `reason` is kept in `error`, backend and prompt id are cleared (the next
        claim chooses new ones).
        """
        async with self._transaction() as db:
            job = await self._transition(
                job_id,
                JobStatus.QUEUED,
                "attempts = attempts + 1, error = :reason, backend = NULL, prompt_id = NULL, "
                "progress = 0, submitted_at = NULL, started_at = NULL",
                {"reason": reason},
                db,
            )
        log.info("job %d requeued (attempt %d): %s", job_id, job.attempts, reason)
        return job

    async def set_status_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that shows the job's queue position and progress."""
        await self._set_columns(
            job_id, "status_channel_id = ?, status_message_id = ?", (channel_id, message_id)
        )

    async def set_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that carries the job's images and buttons."""
        await self._set_columns(
            job_id, "result_channel_id = ?, result_message_id = ?", (channel_id, message_id)
        )

    async def _set_columns(self, job_id: int, sets: str, params: Sequence[Any]) -> None:
        async with self._transaction() as db:
            rows = await self._rows(
                db, f"UPDATE jobs SET {sets} WHERE id = ? RETURNING id", (*params, job_id)
            )
        if not rows:
            raise JobNotFound(job_id)

    # -------------------------------------------------------------------------------- reads

    async def queue_snapshot(self) -> QueueSnapshot:
        """Active jobs by status and queued jobs per guild (from the dispatch counters and an index)."""
        async with self._snapshot() as db:
            queued = await self._rows(db, "SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0")
            in_flight = await self._rows(
                db, f"SELECT status, COUNT(*) AS n FROM jobs WHERE status IN {_IN_FLIGHT_SQL} GROUP BY status"
            )
        by_guild = {int(row["guild_id"]): int(row["waiting"]) for row in queued}
        counts = {row["status"]: int(row["n"]) for row in in_flight}
        by_status = {status.value: counts.get(status.value, 0) for status in sorted(ACTIVE_STATUSES)}
        by_status[JobStatus.QUEUED.value] = sum(by_guild.values())
        return QueueSnapshot(by_status=by_status, queued_by_guild=by_guild)

    async def request_jsons_mentioning(self, needle: str) -> list[str]:
        """The request_json of every job whose request contains `needle` (a scan; for hourly upkeep)."""
        rows = await self._fetch("SELECT request_json FROM jobs WHERE instr(request_json, ?) > 0", (needle,))
        return [str(row["request_json"]) for row in rows]

    async def list_in_flight(self) -> list[Job]:
        """Return submitted and running jobs, oldest first (for restart reconciliation)."""
        rows = await self._fetch(f"SELECT * FROM jobs WHERE status IN {_IN_FLIGHT_SQL} ORDER BY id")
        return [Job.from_row(row) for row in rows]

    async def list_guild_jobs(
        self,
        guild_id: int,
        statuses: Collection[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Return the guild's jobs, newest first, optionally only some statuses."""
        where, params = self._status_filter(statuses)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE guild_id = ?{where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (guild_id, *params, limit, offset),
        )
        return [Job.from_row(row) for row in rows]

    async def list_user_jobs(
        self,
        user_id: int,
        guild_id: int | None = None,
        statuses: Collection[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Return the user's jobs (in one guild, or everywhere), newest first."""
        where, params = self._status_filter(statuses)
        if guild_id is not None:
            where += " AND guild_id = ?"
            params.append(guild_id)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE user_id = ?{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (user_id, *params, limit, offset),
        )
        return [Job.from_row(row) for row in rows]

    @staticmethod
    def _status_filter(statuses: Collection[JobStatus] | None) -> tuple[str, list[Any]]:
        if statuses is None:
            return "", []
        values = sorted(JobStatus(s).value for s in statuses)
        return f" AND status IN ({_placeholders(len(values))})", list(values)

    async def cancellable_jobs(
        self, guild_id: int, user_id: int | None, query: str, limit: int = 25
    ) -> list[Job]:
        """Return active jobs in the guild (only the user's, unless None) matching `query`.

        For /cancel autocomplete: the query matches anywhere in the prompt (case-insensitive for
        ASCII) or the start of the job id (a leading '#' is ignored). Newest first.
        """
        text = query.strip()
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
        id_pattern = re.sub(r"([\\%_])", r"\\\1", text.removeprefix("#")) + "%"
        where = ""
        params: list[Any] = [guild_id]
        if user_id is not None:
            where = " AND user_id = ?"
            params.append(user_id)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE guild_id = ?{where} AND status IN {_ACTIVE_SQL} "
            "AND (prompt LIKE ? ESCAPE '\\' OR CAST(id AS TEXT) LIKE ? ESCAPE '\\') "
            "ORDER BY id DESC LIMIT ?",
            (*params, pattern, id_pattern, limit),
        )
        return [Job.from_row(row) for row in rows]

    async def outputs(self, job_id: int) -> list[JobOutput]:
        """Return the job's outputs in index order."""
        rows = await self._fetch("SELECT * FROM job_outputs WHERE job_id = ? ORDER BY idx", (job_id,))
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
        async with self._snapshot() as db:
            finished = await self._rows(
                db,
                "SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = ? AND finished_at >= ? "
                "GROUP BY status",
                (guild_id, since),
            )
            active = await self._rows(
                db,
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = ? AND status IN {_ACTIVE_SQL} "
                "GROUP BY status",
                (guild_id,),
            )
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
        rows = await self._fetch("SELECT * FROM user_settings WHERE user_id = ?", (user_id,))
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
        updates = ", ".join(f"{name} = excluded.{name}" for name in changes) or "user_id = user_id"
        async with self._transaction() as db:
            rows = await self._rows(
                db,
                "INSERT INTO user_settings (user_id, model, aspect, style, negative, updated_at) "
                "VALUES (:user_id, :model, :aspect, :style, :negative, :now) "
                f"ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at "
                "RETURNING *",
                {**values, "user_id": user_id, "now": self._clock()},
            )
        return self._settings_from_row(rows[0])

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        async with self._transaction() as db:
            rows = await self._rows(
                db, "DELETE FROM user_settings WHERE user_id = ? RETURNING user_id", (user_id,)
            )
        return bool(rows)

    @staticmethod
    def _settings_from_row(row: sqlite3.Row) -> UserSettings:
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
            f"j.finished_at < ? AND j.status IN {_TERMINAL_SQL} AND NOT EXISTS ("
            f"SELECT 1 FROM jobs AS c WHERE c.parent_job_id = j.id AND c.status IN {_ACTIVE_SQL})"
        )
        async with self._transaction() as db:
            paths = await self._rows(
                db,
                f"SELECT o.path FROM jobs AS j JOIN job_outputs AS o ON o.job_id = j.id WHERE {doomed} "
                "ORDER BY o.job_id, o.idx",
                (ts,),
            )
            deleted = await self._rows(
                db,
                f"DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs AS j WHERE {doomed}) RETURNING id",
                (ts,),
            )
        if deleted:
            log.info("purged %d finished jobs (%d output files)", len(deleted), len(paths))
        return [str(row["path"]) for row in paths]

    async def completed_without_result_message(self, since: float, until: float | None = None) -> list[Job]:
        """Completed jobs with a status message but no recorded result message, finished since `since`
        (and before `until`, if given).

        These are results the bot never got to show (it stopped between saving and posting them, or
        Discord refused them).
        """
        rows = await self._fetch(
            "SELECT * FROM jobs WHERE status = 'completed' AND result_message_id IS NULL "
            "AND status_message_id IS NOT NULL AND finished_at >= ? AND finished_at < ? ORDER BY id",
            (since, float("inf") if until is None else until),
        )
        return [Job.from_row(row) for row in rows]

    async def finished_output_bytes(self) -> list[tuple[float, int]]:
        """(finished_at, output bytes) of every finished job with outputs, oldest first (for a size cap)."""
        rows = await self._fetch(
            "SELECT j.finished_at AS finished_at, SUM(o.bytes) AS size FROM jobs AS j "
            f"JOIN job_outputs AS o ON o.job_id = j.id WHERE j.status IN {_TERMINAL_SQL} "
            "GROUP BY j.id ORDER BY j.finished_at, j.id"
        )
        return [(float(row["finished_at"] or 0.0), int(row["size"] or 0)) for row in rows]

    async def total_output_bytes(self) -> int:
        """Return the summed size of all stored outputs."""
        rows = await self._fetch("SELECT COALESCE(SUM(bytes), 0) FROM job_outputs")
        return int(rows[0][0])
