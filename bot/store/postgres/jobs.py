"""PostgreSQL job records: checked status transitions, progress, outputs, Discord message ids and reads."""

from __future__ import annotations

import logging
import re
import string
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

import asyncpg

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
from bot.store.postgres.connection import (
    ACTIVE_SQL,
    IN_FLIGHT_SQL,
    PostgresConnection,
    in_list,
    status_filter,
)

log = logging.getLogger(__name__)

# SQLite's LIKE ignores the case of ASCII letters only; PostgreSQL's ILIKE would fold others too.
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SQL_ASCII_LOWER: Final = f"translate(prompt, '{string.ascii_uppercase}', '{string.ascii_lowercase}')"


class PostgresJobs(PostgresConnection):
    """Status changes and reads of single jobs for `PostgresStore` (see `Store` for the contract).

    Every status change is checked twice: in Python against `bot.jobs.TRANSITIONS` (to raise
    `InvalidTransition` with the current status) on the row locked `FOR UPDATE`, and in SQL
    (`status IN (sources_of(target))`, and the `jobs_status_transition` trigger).
    """

    def __init__(self, pool: asyncpg.Pool, *, url: str = "", clock: Callable[[], float] = time.time) -> None:
        """Wrap an open pool on a migrated database; use `PostgresStore.open` instead."""
        super().__init__(pool, url=url, clock=clock)
        # job id -> the progress this store last wrote for it, to skip updates that would change nothing
        # without a database round trip (dropped on every status change).
        self._written_progress: dict[int, float] = {}

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
            f"WHERE id = $1 AND status IN {in_list(sources_of(target))} RETURNING *",
            job_id,
            target.value,
            *params,
        )
        if row is None:  # unreachable with the row locked; kept as the SQL half of the check
            raise InvalidTransition(job_id, current, target)
        return Job.from_row(row)

    # ------------------------------------------------------------------------------ changes

    async def mark_running(self, job_id: int) -> Job:
        """Record that ComfyUI started executing the job (idempotent while running)."""

        async def work(con: asyncpg.Connection) -> Job:
            row = await con.fetchrow("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if row is None:
                raise JobNotFound(job_id)
            if row["status"] == JobStatus.RUNNING.value:
                return Job.from_row(row)
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
                    f"UPDATE jobs SET progress = $1 WHERE id = $2 AND status IN {IN_FLIGHT_SQL} "
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

    async def get(self, job_id: int) -> Job | None:
        """Return the job, or None if it does not exist."""
        rows = await self._fetch("SELECT * FROM jobs WHERE id = $1", job_id)
        return Job.from_row(rows[0]) if rows else None

    async def job_by_message(self, message_id: int) -> Job | None:
        """Return the job whose status or result message is `message_id` (the result first), or None."""
        rows = await self._fetch(
            "SELECT * FROM (SELECT *, 0 AS found_as FROM jobs WHERE result_message_id = $1 "
            "UNION ALL SELECT *, 1 AS found_as FROM jobs WHERE status_message_id = $1) AS found "
            "ORDER BY found_as, id LIMIT 1",
            message_id,
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
        where, params = status_filter(statuses, 4)
        rows = await self._fetch(
            f"SELECT * FROM jobs WHERE guild_id = $1{where} ORDER BY id DESC LIMIT $2 OFFSET $3",
            guild_id,
            limit,
            offset,
            *params,
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
        where, params = status_filter(statuses, 4)
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
        return [Job.from_row(row) for row in rows]

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
            f"SELECT * FROM jobs WHERE guild_id = $1{where} AND status IN {ACTIVE_SQL} "
            f"AND ({_SQL_ASCII_LOWER} LIKE $2 ESCAPE '\\' OR id::text LIKE $3 ESCAPE '\\') "
            "ORDER BY id DESC LIMIT $4",
            guild_id,
            pattern,
            id_pattern,
            limit,
            *params,
        )
        return [Job.from_row(row) for row in rows]

    async def outputs(self, job_id: int) -> list[JobOutput]:
        """Return the job's outputs in index order."""
        rows = await self._fetch("SELECT * FROM job_outputs WHERE job_id = $1 ORDER BY idx", job_id)
        return [JobOutput.from_row(r) for r in rows]

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
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE guild_id = $1 AND status IN {ACTIVE_SQL} "
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
