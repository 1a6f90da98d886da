"""The PostgreSQL queue: enqueue with limits held across processes, the serialised fair claim, positions.

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
commands for one guild or member never overlap, wherever they run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

import asyncpg

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
from bot.store.postgres.connection import (
    ACTIVE_SQL,
    CLAIM_LOCK,
    IN_FLIGHT_SQL,
    PARENTS_LOCK,
    PostgresConnection,
)

log = logging.getLogger(__name__)

# A claim that found its picked job changed under it looks again, at most this many times.
_CLAIM_TRIES: Final = 5


def owner_key(kind: str, value: int) -> int:
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
    """The query naming the fairest runnable queued job (see `claim_next`).

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
# the claim transaction (PostgreSQL's counterpart of SQLite's INDEXED BY).
_CLAIM_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock($1), set_config('enable_seqscan', 'off', true)"


def _claim_args(models: Collection[str] | None) -> list[Any]:
    """The `$4` argument of the claim and pick queries, when they have one."""
    return [sorted(set(models))] if models else []


_INSERT_JOB: Final = """
    INSERT INTO jobs (id, batch_id, guild_id, channel_id, user_id, kind, action, parent_job_id,
        parent_index, prompt, request_json, model, status_channel_id, status_message_id,
        image_prompt, blend_images, created_at, queued_at)
    SELECT n.id, COALESCE($1::bigint, n.id), $2::bigint, $3::bigint, $4::bigint, $5::text, $6::text,
        $7::bigint, $8::integer, $9::text, $10::text, $11::text, $12::bigint, $13::bigint, $14::text,
        $16::text, $15::double precision, $15::double precision
    FROM (SELECT nextval('jobs_id_seq') AS id) AS n
    RETURNING *
"""


class PostgresQueue(PostgresConnection):
    """Enqueueing, claiming and queue positions of `PostgresStore` (see `Store` and the module doc).

    The round-robin state lives in `dispatch_guilds` and `dispatch_users`, kept by triggers
    (migrations_pg/0001_initial.sql) whoever writes the jobs table.
    """

    async def enqueue_many(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Insert the jobs of one member command, checking `limits` under the owners' advisory locks."""
        if not jobs:
            return []
        owners = owners_of(jobs, limits)
        keys = {owner_key("guild", guild_id) for guild_id, _ in owners}
        if limits is not None:
            keys |= {owner_key("user", user_id) for _, user_id in owners}
        now = self._clock()

        async def work(con: asyncpg.Connection) -> list[Job]:
            # Sorted, so two transactions never wait for each other's keys in opposite orders.
            await con.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", sorted(keys))
            if limits is not None:
                guild_id, user_id = next(iter(owners))
                await check_limits(
                    limits,
                    count=len(jobs),
                    now=now,
                    command_times=lambda since: self._command_times(con, user_id, since),
                    active=lambda: self._count_active(con, guild_id, user_id),
                    queued=lambda: self._count_queued(con, guild_id),
                )
            parents = sorted({job.parent_job_id for job in jobs if job.parent_job_id is not None})
            if parents:
                await con.execute("SELECT pg_advisory_xact_lock_shared($1)", PARENTS_LOCK)
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
                    job.image_prompt.to_json() if job.image_prompt is not None else None,
                    now,
                    ImagePrompt.list_to_json(job.blend_images) if job.blend_images else None,
                )
                created.append(Job.from_row(row))
            return created

        created = await self._run(work, idempotent=False)
        log.info(
            "enqueued jobs %s for user %s in guild %s",
            [j.id for j in created],
            jobs[0].user_id,
            jobs[0].guild_id,
        )
        return created

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
                f"SELECT COUNT(*) FROM jobs WHERE guild_id = $1 AND user_id = $2 AND status IN {ACTIVE_SQL}",
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

    async def count_queued_for_guild(self, guild_id: int) -> int:
        """Return how many jobs wait in the guild's queue."""
        return await self._run(
            lambda con: self._count_queued(con, guild_id), idempotent=True, transaction=False
        )

    # -------------------------------------------------------------------------------- claim

    async def claim_next(
        self,
        backend: str,
        models: Collection[str] | None = None,
        *,
        prompt_id_factory: Callable[[], str] = new_prompt_id,
    ) -> Job | None:
        """Move the fairest queued job to `submitted` on `backend` under the claim lock, or return None.

        Fair across every process sharing the database (see the module doc). The prompt id is
        written by the same statement, so it is committed before the caller posts the prompt.
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
            await con.execute(_CLAIM_LOCK_SQL, CLAIM_LOCK)
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
        job = Job.from_row(row)
        log.debug("claimed job %d (guild %d, user %d) for %s", job.id, job.guild_id, job.user_id, backend)
        return job

    async def explain_claim(self, models: Collection[str] | None = None) -> list[str]:
        """Return PostgreSQL's plan lines for `claim_next`'s UPDATE (diagnostics; tests assert indexes)."""

        async def work(con: asyncpg.Connection) -> list[str]:
            await con.execute("SELECT set_config('enable_seqscan', 'off', true)")
            rows = await con.fetch("EXPLAIN " + _claim_sql(models), "", "", 0.0, *_claim_args(models))
            return [str(row[0]) for row in rows]

        return await self._run(work, idempotent=True)

    # ---------------------------------------------------------------------------- positions

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

    async def queue_snapshot(self) -> QueueSnapshot:
        """Active jobs by status and queued jobs per guild (from the dispatch counters and an index)."""

        async def work(con: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            queued = await con.fetch("SELECT guild_id, waiting FROM dispatch_guilds WHERE waiting > 0")
            in_flight = await con.fetch(
                f"SELECT status, COUNT(*) AS n FROM jobs WHERE status IN {IN_FLIGHT_SQL} GROUP BY status"
            )
            return queued, in_flight

        queued, in_flight = await self._run(work, idempotent=True, snapshot=True)
        by_guild = {int(row["guild_id"]): int(row["waiting"]) for row in queued}
        counts = {row["status"]: int(row["n"]) for row in in_flight}
        by_status = {status.value: counts.get(status.value, 0) for status in sorted(ACTIVE_STATUSES)}
        by_status[JobStatus.QUEUED.value] = sum(by_guild.values())
        return QueueSnapshot(by_status=by_status, queued_by_guild=by_guild)
