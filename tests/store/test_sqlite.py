"""What only the SQLite engine has: triggers that guard the state machine, WAL files, pinned query plans."""

from __future__ import annotations

import itertools
import random
import re
import shutil
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs import InvalidTransition, Job, JobStatus, can_transition
from bot.store import JobStore, SqliteStore
from bot.store.sqlite.retention import BLEND_IMAGE_FILES_SQL, IMAGE_PROMPT_FILES_SQL
from tests.store.helpers import GUILD_A, FakeClock, claim_all, drive_to, enqueue, new_job, raw
from tests.store_engines import sqlite_dispatch_counts_match


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    opened = await JobStore.open(db_path, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


# --------------------------------------------------------------------------------- transitions


async def test_sql_trigger_enforces_the_same_state_machine_as_python(
    store: SqliteStore, db_path: Path
) -> None:
    with raw(db_path) as conn:
        for source, target in itertools.permutations(JobStatus, 2):
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, status, created_at, queued_at) "
                "VALUES (1, 1, 1, 'imagine', 'p', ?, 0, 0)",
                (source.value,),
            )
            try:
                conn.execute("UPDATE jobs SET status = ? WHERE status = ?", (target.value, source.value))
                allowed = True
            except sqlite3.IntegrityError:
                allowed = False
            conn.execute("ROLLBACK")
            assert allowed == can_transition(source, target), (source, target)


async def test_completed_job_cannot_go_back_to_running_even_through_raw_sql(
    store: SqliteStore, db_path: Path
) -> None:
    job = await drive_to(store, JobStatus.COMPLETED)
    with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="illegal job status transition"):
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job.id,))
    with pytest.raises(InvalidTransition):
        await store.mark_running(job.id)


# ------------------------------------------------------------------------------------- restarts


async def test_restart_after_a_crash_finds_in_flight_jobs_and_keeps_the_queue(
    db_path: Path, tmp_path: Path, clock: FakeClock
) -> None:
    store = await JobStore.open(db_path, clock=clock)
    try:
        jobs = [await enqueue(store, new_job(GUILD_A + i % 2, i)) for i in range(5)]
        submitted = await store.claim_next("gpu0")
        running = await store.claim_next("gpu1")
        assert submitted is not None and running is not None
        await store.mark_running(running.id)
        await store.update_progress(running.id, 0.5)
        waiting_order = await store.positions(GUILD_A)
        # Copy the files as they are on disk right now, WAL included: what a kill -9 leaves behind.
        crashed = tmp_path / "crashed" / "jobs.db"
        crashed.parent.mkdir()
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{db_path}{suffix}", f"{crashed}{suffix}")
    finally:
        await store.close()

    for path in (crashed, db_path):
        async with await JobStore.open(path, clock=clock) as reopened:
            in_flight = await reopened.list_in_flight()
            assert [(j.id, j.status, j.backend, j.prompt_id) for j in in_flight] == [
                (submitted.id, JobStatus.SUBMITTED, "gpu0", submitted.prompt_id),
                (running.id, JobStatus.RUNNING, "gpu1", running.prompt_id),
            ]
            assert in_flight[1].progress == 0.5
            assert await reopened.positions(GUILD_A) == waiting_order
            assert len(await claim_all(reopened)) == len(jobs) - 2


# ---------------------------------------------------------------------------------- performance


def _plan_scans_table(plan: list[str]) -> list[str]:
    """Plan lines that read job rows without an index, or sort with a temporary b-tree."""
    return [
        line
        for line in plan
        if re.match(r"SCAN (jobs|j|jg|ju|g|u)\b(?! USING (COVERING )?INDEX)", line) or "TEMP B-TREE" in line
    ]


@pytest.mark.parametrize("models", [None, set(), {"sdxl", "flux"}], ids=["any", "none", "two"])
async def test_claim_queries_use_indexes_not_table_scans(store: SqliteStore, models: set[str] | None) -> None:
    plan = await store.explain_claim(models)
    assert any("idx_jobs_queued" in line for line in plan)
    assert any("idx_dispatch_guilds_next" in line for line in plan)
    assert not _plan_scans_table(plan), plan


async def test_image_prompts_in_use_are_read_from_their_index_not_the_whole_table(db_path: Path) -> None:
    async with await JobStore.open(db_path):
        pass
    with raw(db_path) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + IMAGE_PROMPT_FILES_SQL)]
    assert plan == ["SCAN jobs USING INDEX idx_jobs_image_prompt_file"], plan


async def test_blend_images_in_use_are_read_from_their_index_not_the_whole_table(db_path: Path) -> None:
    async with await JobStore.open(db_path):
        pass
    with raw(db_path) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + BLEND_IMAGE_FILES_SQL)]
    assert plan[0].startswith("SEARCH j USING COVERING INDEX idx_jobs_blend_images"), plan
    assert not any(re.fullmatch(r"SCAN (j|jobs)", line) for line in plan), plan


async def test_claiming_among_ten_thousand_waiting_jobs_is_fast_and_fair(db_path: Path) -> None:
    async with await JobStore.open(db_path):
        pass
    rng = random.Random(7)
    owners = [(guild, user) for guild in range(100) for user in range(10) for _ in range(10)]
    rng.shuffle(owners)
    with raw(db_path) as conn:  # another writer: the triggers keep the dispatch state right
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, model, created_at, queued_at) "
            "VALUES (?, ?, ?, 'imagine', ?, ?, ?, ?)",
            [
                (10_000 + g, 1, 500 + u, f"prompt {i}", ("sdxl", "flux")[i % 2], 1000.0 + i, 1000.0 + i)
                for i, (g, u) in enumerate(owners)
            ],
        )
        conn.execute("COMMIT")
    assert sqlite_dispatch_counts_match(db_path)

    async with await JobStore.open(db_path) as store:
        started = time.perf_counter()
        places = await store.positions(10_000)
        positions_ms = (time.perf_counter() - started) * 1000
        timings: list[float] = []
        claimed: list[Job] = []
        for i in range(600):
            models = {"sdxl"} if i >= 500 else None
            started = time.perf_counter()
            job = await store.claim_next("gpu0", models)
            timings.append((time.perf_counter() - started) * 1000)
            assert job is not None
            claimed.append(job)

    for start in range(0, 500, 100):  # five full rounds: every guild once per round
        assert len({job.guild_id for job in claimed[start : start + 100]}) == 100
    first_guild = [job for job in claimed[:500] if job.guild_id == 10_000]
    assert [job.id for job in first_guild] == sorted(places, key=places.__getitem__)[:5]
    assert len({job.user_id for job in first_guild}) == 5
    per_user: dict[tuple[int, int], list[float]] = {}
    for job in claimed:
        per_user.setdefault((job.guild_id, job.user_id), []).append(job.queued_at)
    assert all(times == sorted(times) for times in per_user.values())
    assert all(job.model == "sdxl" for job in claimed[500:])
    quantiles = statistics.quantiles(timings, n=100)
    print(
        f"\nclaim_next over 10k waiting jobs: p50 {statistics.median(timings):.3f} ms, "
        f"p99 {quantiles[98]:.3f} ms (model-restricted p50 {statistics.median(timings[500:]):.3f} ms); "
        f"positions() for a 100-job guild {positions_ms:.2f} ms"
    )
