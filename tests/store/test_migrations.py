"""SQLite migrations: numbered files applied in order, one transaction each; a newer schema is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.jobs import ImagePrompt, JobKind
from bot.store import JobStore, Migration, SchemaTooNew, load_migrations, split_statements
from tests.store.helpers import enqueue, new_job, raw


async def test_new_database_is_created_with_parent_folders_wal_and_latest_schema(db_path: Path) -> None:
    async with await JobStore.open(db_path) as store:
        assert await store.schema_version() == len(load_migrations()) >= 1
    with raw(db_path) as conn:  # the file and its folders exist
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations())


async def test_old_database_is_upgraded_in_place_keeping_its_jobs(db_path: Path) -> None:
    shipped = load_migrations()
    async with await JobStore.open(db_path, migrations=shipped) as store:
        job = await enqueue(store, new_job(prompt="kept across the upgrade"))
    upgrade = Migration(
        len(shipped) + 1,
        "add_note",
        "ALTER TABLE jobs ADD COLUMN note TEXT;\n"
        "UPDATE jobs SET note = 'upgraded; ok';\n"
        "CREATE TRIGGER note_guard BEFORE UPDATE OF note ON jobs BEGIN SELECT 1; SELECT 2; END;\n",
    )
    async with await JobStore.open(db_path, migrations=[*shipped, upgrade]) as store:
        assert await store.schema_version() == upgrade.version
        assert (await store.get(job.id)) == job
    with raw(db_path) as conn:
        assert conn.execute("SELECT note FROM jobs").fetchall() == [("upgraded; ok",)]


async def test_failed_migration_rolls_back_and_leaves_the_old_version(db_path: Path) -> None:
    shipped = load_migrations()
    async with await JobStore.open(db_path, migrations=shipped):
        pass
    broken = Migration(
        len(shipped) + 1, "broken", "CREATE TABLE half_done (x);\nSELECT * FROM no_such_table;"
    )
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await JobStore.open(db_path, migrations=[*shipped, broken])
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(shipped)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables


async def test_database_from_a_newer_bot_is_refused_and_left_untouched(db_path: Path) -> None:
    async with await JobStore.open(db_path):
        pass
    newer = len(load_migrations()) + 5
    with raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaTooNew, match=rf"version {newer}.*only knows up to {len(load_migrations())}"):
        await JobStore.open(db_path)
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer


def test_split_statements_keeps_trigger_bodies_and_quoted_semicolons_whole() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE t (x TEXT DEFAULT ';');\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'a;b'; DELETE FROM t; END;\n"
        "-- trailing comment\n"
    )
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE t (x)")


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_version_1_image_prompts_move_from_the_request_into_their_own_column(db_path: Path) -> None:
    shipped = load_migrations()
    async with await JobStore.open(db_path, migrations=shipped[:1]):
        pass
    prompt = {"file": "image_prompts/" + "a" * 32 + ".png", "width": 640, "height": 480}
    requests = {
        "img2img": json.dumps(
            {"text": "make it blue", "seed": 7, "image_prompt": prompt}, ensure_ascii=False
        ),
        "plain": json.dumps({"text": "a fox", "seed": 8}),
        "not an object": json.dumps({"text": "odd", "image_prompt": "lost.png"}),
    }
    with raw(db_path) as conn:  # rows as version 1 of the bot wrote them
        for prompt_text, request in requests.items():
            conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, request_json, "
                "created_at, queued_at) VALUES (1, 1, 1, 'img2img', ?, ?, 0, 0)",
                (prompt_text, request),
            )

    async with await JobStore.open(db_path) as store:
        assert await store.schema_version() == len(shipped) >= 2
        img2img, plain, odd = [await store.get(job_id) for job_id in (1, 2, 3)]
        assert await store.image_prompt_files_in_use() == {prompt["file"]}

    assert img2img is not None and plain is not None and odd is not None
    assert img2img.kind is JobKind.IMG2IMG
    assert img2img.image_prompt == ImagePrompt(str(prompt["file"]), 640, 480)
    assert json.loads(img2img.request_json) == {"text": "make it blue", "seed": 7}
    assert (plain.image_prompt, plain.request_json) == (None, requests["plain"])  # untouched
    assert odd.image_prompt is None and json.loads(odd.request_json) == {"text": "odd"}
    with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("UPDATE jobs SET image_prompt = 'not json' WHERE id = 1")


async def test_version_4_settings_get_remix_off_and_jobs_no_blend_images(db_path: Path) -> None:
    shipped = load_migrations()
    async with await JobStore.open(db_path, migrations=shipped[:4]):
        pass
    with raw(db_path) as conn:  # rows as version 4 of the bot wrote them
        conn.execute("INSERT INTO user_settings (user_id, model, updated_at) VALUES (9, 'sdxl', 0)")
        conn.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, created_at, queued_at) "
            "VALUES (1, 1, 1, 'imagine', 'a fox', 0, 0)"
        )

    async with await JobStore.open(db_path) as store:
        settings, job = await store.get_user_settings(9), await store.get(1)

    assert settings is not None and (settings.model, settings.remix) == ("sdxl", False)
    assert job is not None and job.blend_images == ()
    with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute('UPDATE jobs SET blend_images = \'{"file": "a.png"}\' WHERE id = 1')
