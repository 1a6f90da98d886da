"""PostgreSQL retention queries: purging finished jobs, output sizes, results never shown, image prompts in use."""

from __future__ import annotations

import logging
import math
from typing import Final

import asyncpg

from bot.jobs import Job
from bot.store.postgres.connection import ACTIVE_SQL, PARENTS_LOCK, TERMINAL_SQL, PostgresConnection

log = logging.getLogger(__name__)

# Reads idx_jobs_image_prompt_file and idx_jobs_blend_images (migrations_pg/0001_initial.sql): only jobs
# that have an image prompt, or blend images.
IMAGE_PROMPT_FILES_SQL: Final = (
    "SELECT (image_prompt::json ->> 'file') AS file FROM jobs WHERE image_prompt IS NOT NULL "
    "UNION SELECT image ->> 'file' FROM jobs, json_array_elements(blend_images::json) AS image "
    "WHERE blend_images IS NOT NULL"
)


class PostgresRetention(PostgresConnection):
    """What retention and restart upkeep ask of `PostgresStore` (see `Store` for the contract)."""

    async def purge_finished_before(self, ts: float) -> list[str]:
        """Delete terminal jobs that finished before `ts`, with their output rows.

        Jobs with a child that is still queued or on a backend are kept (the child needs the
        parent's image). Returns the deleted output paths, for the caller to remove from disk.
        Children of deleted jobs keep existing with `parent_job_id` set to NULL.
        """
        doomed = (
            f"j.finished_at < $1 AND j.status IN {TERMINAL_SQL} AND NOT EXISTS ("
            f"SELECT 1 FROM jobs AS c WHERE c.parent_job_id = j.id AND c.status IN {ACTIVE_SQL})"
        )

        async def work(con: asyncpg.Connection) -> list[asyncpg.Record]:
            # Waits for enqueues of child jobs in progress (they hold this lock shared), so the
            # statement below sees every child committed before it; later ones find no parent.
            await con.execute("SELECT pg_advisory_xact_lock($1)", PARENTS_LOCK)
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
        return [Job.from_row(row) for row in rows]

    async def finished_output_bytes(self) -> list[tuple[float, int]]:
        """(finished_at, output bytes) of every finished job with outputs, oldest first (for a size cap)."""
        rows = await self._fetch(
            "SELECT j.finished_at AS finished_at, SUM(o.bytes) AS size FROM jobs AS j "
            f"JOIN job_outputs AS o ON o.job_id = j.id WHERE j.status IN {TERMINAL_SQL} "
            "GROUP BY j.id ORDER BY j.finished_at, j.id"
        )
        return [(float(row["finished_at"] or 0.0), int(row["size"] or 0)) for row in rows]

    async def total_output_bytes(self) -> int:
        """Return the summed size of all stored outputs."""
        rows = await self._fetch("SELECT COALESCE(SUM(bytes), 0) FROM job_outputs")
        return int(rows[0][0])

    async def image_prompt_files_in_use(self) -> set[str]:
        """Return the `file` of every image prompt a job still has, whatever its status."""
        rows = await self._fetch(IMAGE_PROMPT_FILES_SQL)
        return {row["file"] for row in rows if isinstance(row["file"], str)}
