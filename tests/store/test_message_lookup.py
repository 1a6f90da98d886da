"""Finding a job from one of its Discord messages, and the member's ping setting, on every engine; the
SQLite migration and indexes behind them."""

from __future__ import annotations

from pathlib import Path

from bot.jobs import JobStatus
from bot.store import JobStore, Store, load_migrations
from tests.store.helpers import drive_to, raw


async def test_a_job_is_found_by_its_status_message_and_by_its_result_message(store: Store) -> None:
    shown = await drive_to(store, JobStatus.COMPLETED)
    waiting = await drive_to(store, JobStatus.QUEUED)
    await store.set_status_message(shown.id, 77, 1001)
    await store.set_result_message(shown.id, 77, 1002)
    await store.set_status_message(waiting.id, 77, 1003)

    by_status, by_result, by_other_status = [await store.job_by_message(m) for m in (1001, 1002, 1003)]

    assert by_status is not None and by_status.id == shown.id
    assert by_result is not None and by_result.id == shown.id and by_result.result_message_id == 1002
    assert by_other_status is not None and by_other_status.id == waiting.id
    assert await store.job_by_message(9999) is None


async def test_a_result_edited_into_its_status_message_is_one_job(store: Store) -> None:
    job = await drive_to(store, JobStatus.COMPLETED)
    await store.set_status_message(job.id, 77, 2001)
    await store.set_result_message(job.id, 77, 2001)
    found = await store.job_by_message(2001)
    assert found is not None and found.id == job.id


async def test_ping_is_on_until_the_member_turns_it_off_and_survives_other_changes(store: Store) -> None:
    first = await store.update_user_settings(7, model="sdxl")
    off = await store.update_user_settings(7, ping=False)
    kept = await store.update_user_settings(7, aspect="16:9")
    on = await store.update_user_settings(7, ping=True)
    fresh = await store.update_user_settings(8, ping=False)

    assert first.ping is True
    assert (off.ping, off.model) == (False, "sdxl")
    assert (kept.ping, kept.aspect) == (False, "16:9")
    assert on.ping is True
    assert fresh.ping is False and fresh.model is None
    assert await store.get_user_settings(8) == fresh
    assert await store.clear_user_settings(8)
    assert await store.get_user_settings(8) is None  # the member's defaults, ping on, apply again


async def test_version_3_settings_keep_their_values_and_ping_by_default(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    shipped = load_migrations()
    async with await JobStore.open(path, migrations=shipped[:3]):
        pass
    with raw(path) as conn:  # a row as version 3 of the bot wrote it
        conn.execute("INSERT INTO user_settings (user_id, model, updated_at) VALUES (5, 'tiny', 1.0)")

    async with await JobStore.open(path) as store:
        settings = await store.get_user_settings(5)

    assert settings is not None and (settings.model, settings.ping) == ("tiny", True)


async def test_message_lookups_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with await JobStore.open(path):
        pass
    with raw(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM (SELECT *, 0 AS found_as FROM jobs WHERE result_message_id = 1 "
            "UNION ALL SELECT *, 1 AS found_as FROM jobs WHERE status_message_id = 1) "
            "ORDER BY found_as, id LIMIT 1"
        ).fetchall()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "idx_jobs_result_message" in details and "idx_jobs_status_message" in details, details
