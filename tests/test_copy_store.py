"""copy-store: an SQLite store moves into an empty PostgreSQL database with its ids, order and settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import DatabaseUrl
from bot.copy_store import CopyRefused, copy_store
from bot.instance_lock import InstanceLock
from bot.jobs import OutputFile
from bot.store import PostgresStore, SqliteStore
from tests.factories import FakeClock, new_job

ROOT = Path(__file__).resolve().parent.parent


async def _sqlite_with_history(path: Path) -> dict[str, int]:
    """A store with finished and waiting jobs of two guilds, settings, and one claim served."""
    store = await SqliteStore.open(path, clock=FakeClock())
    try:
        done = await store.enqueue_many([new_job(guild=1, user=10, prompt="a finished fox")])
        claimed = await store.claim_next("gpu0")
        assert claimed is not None and claimed.id == done[0].id
        await store.complete(claimed.id, [OutputFile("/data/out/1_0.png", 64, 64, 123)])
        for guild, user in ((1, 10), (1, 11), (2, 20), (2, 20)):
            await store.enqueue_many([new_job(guild=guild, user=user)])
        await store.update_user_settings(10, model="tiny", aspect="16:9", ping=False)
        return {"finished": claimed.id}
    finally:
        await store.close()


async def test_copy_keeps_ids_outputs_settings_and_the_next_claims(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "jobs.db"
    ids = await _sqlite_with_history(source)
    expected_order = []
    # What SQLite itself would claim next, from a copy of the file.
    (tmp_path / "order.db").write_bytes(source.read_bytes())
    order_store = await SqliteStore.open(tmp_path / "order.db")
    try:
        while (job := await order_store.claim_next("gpu0")) is not None:
            expected_order.append(job.id)
    finally:
        await order_store.close()

    report = await copy_store(source, DatabaseUrl(pg_url))
    assert (report.jobs, report.outputs, report.settings) == (5, 1, 1)

    target = await PostgresStore.open(pg_url)
    try:
        finished = await target.get(ids["finished"])
        assert finished is not None and finished.prompt == "a finished fox"
        assert [o.path for o in await target.outputs(ids["finished"])] == ["/data/out/1_0.png"]
        settings = await target.get_user_settings(10)
        assert settings is not None and (settings.model, settings.aspect, settings.ping) == (
            "tiny",
            "16:9",
            False,
        )
        claimed = []
        while (job := await target.claim_next("gpu0")) is not None:
            claimed.append(job.id)
        assert claimed == expected_order  # the round robin goes on where SQLite left it
        new = await target.enqueue_many([new_job(guild=3, user=30)])
        assert new[0].id > max(expected_order)  # no id is handed out twice
    finally:
        await target.close()


async def test_copy_refuses_a_database_that_is_not_empty(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "jobs.db"
    await _sqlite_with_history(source)
    await copy_store(source, DatabaseUrl(pg_url))
    with pytest.raises(CopyRefused, match="already holds jobs"):
        await copy_store(source, DatabaseUrl(pg_url))


async def test_copy_refuses_while_a_bot_runs_on_the_file(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "jobs.db"
    await _sqlite_with_history(source)
    with InstanceLock(source), pytest.raises(CopyRefused, match="Stop the bot"):
        await copy_store(source, DatabaseUrl(pg_url))
    target = await PostgresStore.open(pg_url)
    try:
        assert await target.is_empty()
    finally:
        await target.close()


def test_the_command_copies_and_never_prints_the_password(tmp_path: Path, write_config) -> None:
    config = write_config()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "copy-store", "--config", str(config), "--to", "mysql://u:topsecret@h/db"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "postgresql://" in result.stderr and "topsecret" not in result.stderr + result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "bot", "copy-store", "--config", str(config),
         "--to", "postgresql://u:topsecret@127.0.0.1:9/db"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1  # no database file yet
    assert "topsecret" not in result.stderr + result.stdout
