"""`comfy-imagine copy-store`: move an SQLite store into an empty PostgreSQL database, ids and order kept.

Job ids live on in Discord (buttons on old results carry them), so every row keeps its id, the id
sequence moves past the highest id SQLite ever gave, and the round-robin state comes along, so the next
claim is the one SQLite would have made. Settings and image references (the `path` of each output) are
copied as they are: the images themselves stay where they are.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.config import DatabaseUrl
from bot.instance_lock import InstanceLock
from bot.jobs import Job, JobOutput, UserSettings
from bot.store import SqliteStore
from bot.store.postgres import PostgresStore

log = logging.getLogger(__name__)


class CopyRefused(RuntimeError):
    """The copy cannot start; the message says why and what to do (for the operator)."""


@dataclass(frozen=True, slots=True)
class StoreRows:
    """Everything a store holds, read from SQLite."""

    jobs: list[Job]
    outputs: list[JobOutput]
    settings: list[UserSettings]
    guild_order: list[tuple[int, int, int]]
    user_order: list[tuple[int, int, int, int]]
    last_id: int


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What was copied."""

    jobs: int
    outputs: int
    settings: int


async def copy_store(source: Path, target: DatabaseUrl) -> CopyReport:
    """Copy the SQLite store at `source` into the empty PostgreSQL database `target`.

    Refuses (CopyRefused) while a bot runs on `source`, when `source` does not exist, and when the target
    already holds jobs or settings. The source is migrated to this version's schema first.
    """
    if not await asyncio.to_thread(source.is_file):
        raise CopyRefused(f"{source} does not exist (storage.database)")
    lock = InstanceLock(source)
    try:
        lock.acquire()
    except RuntimeError as exc:
        raise CopyRefused(f"{exc} Stop the bot before copying its store.") from None
    try:
        migrated = await SqliteStore.open(source)
        await migrated.close()
        rows = await asyncio.to_thread(read_sqlite, source)
        postgres = await PostgresStore.open(target.secret())
        try:
            if not await postgres.is_empty():
                raise CopyRefused(
                    f"the PostgreSQL database {target} already holds jobs or settings; copy-store only "
                    "fills an empty database (create a new one, or drop this one's tables)"
                )
            count = await postgres.import_rows(
                rows.jobs,
                rows.outputs,
                rows.settings,
                guild_order=rows.guild_order,
                user_order=rows.user_order,
                last_id=rows.last_id,
            )
        finally:
            await postgres.close()
    finally:
        lock.release()
    log.info("copied %d jobs from %s to %s", count, source, target)
    return CopyReport(jobs=count, outputs=len(rows.outputs), settings=len(rows.settings))


def read_sqlite(path: Path) -> StoreRows:
    """Read every row of an SQLite store (already migrated), read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        jobs = [Job.from_row(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")]
        outputs = [
            JobOutput.from_row(r) for r in conn.execute("SELECT * FROM job_outputs ORDER BY job_id, idx")
        ]
        settings = [
            UserSettings.from_row(r) for r in conn.execute("SELECT * FROM user_settings ORDER BY user_id")
        ]
        guild_order = [
            (int(r[0]), int(r[1]), int(r[2]))
            for r in conn.execute("SELECT guild_id, served_seq, joined_seq FROM dispatch_guilds")
        ]
        user_order = [
            (int(r[0]), int(r[1]), int(r[2]), int(r[3]))
            for r in conn.execute("SELECT guild_id, user_id, served_seq, joined_seq FROM dispatch_users")
        ]
        sequence = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        last_id = int(sequence[0]) if sequence else 0
    finally:
        conn.close()
    return StoreRows(jobs, outputs, settings, guild_order, user_order, last_id)
