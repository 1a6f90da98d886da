"""Copying another store into an empty PostgreSQL database (`copy-store`): rows with their ids, in one go."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from bot.jobs import ImagePrompt, Job, JobOutput, UserSettings
from bot.store.postgres.connection import CLAIM_LOCK, PostgresConnection

log = logging.getLogger(__name__)


def _job_record(job: Job, columns: list[str]) -> tuple[Any, ...]:
    """The jobs-table values of `job`, in `columns` order (enums as their values, the image prompt as JSON)."""
    values = {name: getattr(job, name) for name in columns}
    values["kind"] = job.kind.value
    values["status"] = job.status.value
    values["image_prompt"] = job.image_prompt.to_json() if job.image_prompt is not None else None
    values["blend_images"] = ImagePrompt.list_to_json(job.blend_images) if job.blend_images else None
    return tuple(values[name] for name in columns)


class PostgresBulkImport(PostgresConnection):
    """What `copy-store` needs beyond the `Store` protocol: is the database empty, import rows, move ids on."""

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
        columns = list(Job.__slots__)
        records = [_job_record(job, columns) for job in sorted(jobs, key=lambda job: job.id)]
        output_records = [
            (o.job_id, o.idx, o.path, o.width, o.height, o.bytes, o.created_at) for o in outputs
        ]
        # The table's columns are UserSettings' fields, switches (ping, ...) included.
        setting_columns = [f.name for f in dataclasses.fields(UserSettings)]
        setting_records = [tuple(getattr(s, name) for name in setting_columns) for s in settings]
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
                columns=setting_columns,
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
            await con.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)  # no claim meanwhile
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
