"""SQLite job records: checked status transitions, progress, outputs, Discord message ids and reads."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import aiosqlite

from bot.jobs import (
    IN_FLIGHT_STATUSES,
    GuildStats,
    InvalidTransition,
    Job,
    JobNotFound,
    JobOutput,
    JobStatus,
    OutputFile,
    can_transition,
    clamp_progress,
    sources_of,
)
from bot.store.base import PROGRESS_WRITE_STEP
from bot.store.sqlite.connection import (
    ACTIVE_SQL,
    IN_FLIGHT_SQL,
    SqliteConnection,
    in_list,
    placeholders,
)

log = logging.getLogger(__name__)


class SqliteJobs(SqliteConnection):
    """Status changes and reads of single jobs for `SqliteStore` (see `Store` for the contract).

    Every status change is checked twice: in Python against `bot.jobs.TRANSITIONS` (to raise
    `InvalidTransition` with the current status) and in SQL (`status IN (sources_of(target))`, and
    the `jobs_status_transition` trigger), inside one `BEGIN IMMEDIATE` transaction.
    """

    def __init__(self, db: aiosqlite.Connection, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an open, migrated connection; use `SqliteStore.open` instead."""
        super().__init__(db, clock=clock)
        # job id -> the progress this store last wrote for it, to skip updates that would change nothing
        # without a database round trip (dropped on every status change).
        self._written_progress: dict[int, float] = {}

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
            f"WHERE id = :job_id AND status IN {in_list(sources_of(target))} RETURNING *",
            {**params, "target": target.value, "job_id": job_id},
        )
        if not rows:  # unreachable inside BEGIN IMMEDIATE; kept as the SQL half of the check
            raise InvalidTransition(job_id, current, target)
        return Job.from_row(rows[0])

    # ------------------------------------------------------------------------------ changes

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
                f"UPDATE jobs SET progress = :p WHERE id = :id AND status IN {IN_FLIGHT_SQL} "
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

    async def get(self, job_id: int) -> Job | None:
        """Return the job, or None if it does not exist."""
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    async def job_by_message(self, message_id: int) -> Job | None:
        """Return the job whose status or result message is `message_id` (the result first), or None."""
        # Two indexed lookups (idx_jobs_result_message, idx_jobs_status_message); a message that is both
        # (a result edited into its status message) belongs to one job.
        rows = await self._fetch(
            "SELECT * FROM (SELECT *, 0 AS found_as FROM jobs WHERE result_message_id = :m "
            "UNION ALL SELECT *, 1 AS found_as FROM jobs WHERE status_message_id = :m) "
            "ORDER BY found_as, id LIMIT 1",
            {"m": message_id},
        )
        return Job.from_row(rows[0]) if rows else None

    async def list_in_flight(self) -> list[Job]:
        """Return submitted and running jobs, oldest first (for restart reconciliation)."""
        rows = await self._fetch(f"SELECT * FROM jobs WHERE status IN {IN_FLIGHT_SQL} ORDER BY id")
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
        return f" AND status IN ({placeholders(len(values))})", list(values)

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
            f"SELECT * FROM jobs WHERE guild_id = ?{where} AND status IN {ACTIVE_SQL} "
            "AND (prompt LIKE ? ESCAPE '\\' OR CAST(id AS TEXT) LIKE ? ESCAPE '\\') "
            "ORDER BY id DESC LIMIT ?",
            (*params, pattern, id_pattern, limit),
        )
        return [Job.from_row(row) for row in rows]

    async def outputs(self, job_id: int) -> list[JobOutput]:
        """Return the job's outputs in index order."""
        rows = await self._fetch("SELECT * FROM job_outputs WHERE job_id = ? ORDER BY idx", (job_id,))
        return [JobOutput.from_row(r) for r in rows]

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
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = ? AND status IN {ACTIVE_SQL} "
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
