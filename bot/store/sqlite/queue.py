"""The SQLite queue: enqueue with atomic limit checks, the fair claim, queue positions and counts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import aiosqlite

from bot.jobs import (
    ACTIVE_STATUSES,
    EnqueueLimits,
    ImagePrompt,
    Job,
    JobKind,
    JobNotFound,
    JobStatus,
    NewJob,
    QueueSnapshot,
    round_robin,
)
from bot.store.base import new_prompt_id
from bot.store.limits import check_limits, owners_of
from bot.store.sqlite.connection import ACTIVE_SQL, IN_FLIGHT_SQL, SqliteConnection

log = logging.getLogger(__name__)


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


class SqliteQueue(SqliteConnection):
    """Enqueueing, claiming and queue positions of `SqliteStore` (see `Store` for the contract).

    The round-robin state lives in `dispatch_guilds` and `dispatch_users`, kept by triggers
    (migrations/0001_initial.sql) whoever writes the jobs table.
    """

    async def enqueue_many(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Insert the jobs of one member command, checking `limits` in the same `BEGIN IMMEDIATE`."""
        if not jobs:
            return []
        owners = owners_of(jobs, limits)
        now = self._clock()
        async with self._transaction() as db:
            if limits is not None:
                guild_id, user_id = next(iter(owners))
                await check_limits(
                    limits,
                    count=len(jobs),
                    now=now,
                    command_times=lambda since: self._command_times(db, user_id, since),
                    active=lambda: self._count_active(db, guild_id, user_id),
                    queued=lambda: self._count_queued(db, guild_id),
                )
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
                        parent_job_id, parent_index, prompt, request_json, image_prompt, blend_images,
                        model, status_channel_id, status_message_id, created_at, queued_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
                        job.image_prompt.to_json() if job.image_prompt is not None else None,
                        ImagePrompt.list_to_json(job.blend_images) if job.blend_images else None,
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
            f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ? AND status IN {ACTIVE_SQL}",
            (guild_id, user_id),
        )
        return int(next(iter(rows))[0])

    @staticmethod
    async def _count_queued(db: aiosqlite.Connection, guild_id: int) -> int:
        rows = await db.execute_fetchall(
            "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND status = 'queued'", (guild_id,)
        )
        return int(next(iter(rows))[0])

    async def count_queued_for_guild(self, guild_id: int) -> int:
        """Return how many jobs wait in the guild's queue."""
        async with self._lock:
            return await self._count_queued(self._db, guild_id)

    # -------------------------------------------------------------------------------- claim

    async def claim_next(
        self,
        backend: str,
        models: Collection[str] | None = None,
        *,
        prompt_id_factory: Callable[[], str] = new_prompt_id,
    ) -> Job | None:
        """Move the fairest queued job to `submitted` on `backend` in one UPDATE, or return None.

        The prompt id is written by the same statement, so it is on disk before the caller posts
        the prompt.
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

    # ---------------------------------------------------------------------------- positions

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

    async def queue_snapshot(self) -> QueueSnapshot:
        """Active jobs by status and queued jobs per guild (from the dispatch counters and an index)."""
        async with self._snapshot() as db:
            queued = await self._rows(db, "SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0")
            in_flight = await self._rows(
                db, f"SELECT status, COUNT(*) AS n FROM jobs WHERE status IN {IN_FLIGHT_SQL} GROUP BY status"
            )
        by_guild = {int(row["guild_id"]): int(row["waiting"]) for row in queued}
        counts = {row["status"]: int(row["n"]) for row in in_flight}
        by_status = {status.value: counts.get(status.value, 0) for status in sorted(ACTIVE_STATUSES)}
        by_status[JobStatus.QUEUED.value] = sum(by_guild.values())
        return QueueSnapshot(by_status=by_status, queued_by_guild=by_guild)
