"""SQLite retention queries: purging finished jobs, output sizes, results never shown, image prompts in use."""

from __future__ import annotations

import logging

from bot.jobs import Job
from bot.store.sqlite.connection import ACTIVE_SQL, TERMINAL_SQL, SqliteConnection

log = logging.getLogger(__name__)

# Reads idx_jobs_image_prompt_file (migrations/0002_image_prompt.sql): only jobs that have an image prompt.
IMAGE_PROMPT_FILES_SQL = (
    "SELECT DISTINCT json_extract(image_prompt, '$.file') AS file FROM jobs WHERE image_prompt IS NOT NULL"
)
# Reads idx_jobs_blend_images (migrations/0005_user_settings_remix.sql): only blend jobs.
BLEND_IMAGE_FILES_SQL = (
    "SELECT DISTINCT json_extract(image.value, '$.file') AS file "
    "FROM jobs AS j, json_each(j.blend_images) AS image WHERE j.blend_images IS NOT NULL"
)


class SqliteRetention(SqliteConnection):
    """What retention and restart upkeep ask of `SqliteStore` (see `Store` for the contract)."""

    async def purge_finished_before(self, ts: float) -> list[str]:
        """Delete terminal jobs that finished before `ts`, with their output rows.

        Jobs with a child that is still queued or on a backend are kept (the child needs the
        parent's image). Returns the deleted output paths, for the caller to remove from disk.
        Children of deleted jobs keep existing with `parent_job_id` set to NULL.
        """
        doomed = (
            f"j.finished_at < ? AND j.status IN {TERMINAL_SQL} AND NOT EXISTS ("
            f"SELECT 1 FROM jobs AS c WHERE c.parent_job_id = j.id AND c.status IN {ACTIVE_SQL})"
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
            f"JOIN job_outputs AS o ON o.job_id = j.id WHERE j.status IN {TERMINAL_SQL} "
            "GROUP BY j.id ORDER BY j.finished_at, j.id"
        )
        return [(float(row["finished_at"] or 0.0), int(row["size"] or 0)) for row in rows]

    async def total_output_bytes(self) -> int:
        """Return the summed size of all stored outputs."""
        rows = await self._fetch("SELECT COALESCE(SUM(bytes), 0) FROM job_outputs")
        return int(rows[0][0])

    async def image_prompt_files_in_use(self) -> set[str]:
        """Return the `file` of every image prompt a job still has (blends: each image), whatever its status."""
        rows = await self._fetch(f"{IMAGE_PROMPT_FILES_SQL} UNION {BLEND_IMAGE_FILES_SQL}")
        return {row["file"] for row in rows if isinstance(row["file"], str)}
