"""The PostgreSQL job store: every engine-neutral store test again, and what processes sharing one database need."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import sqlite3
import statistics
import time
import tomllib
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs import (
    EnqueueLimits,
    InvalidTransition,
    Job,
    JobStatus,
    LimitExceeded,
    LimitKind,
    can_transition,
)
from bot.store import JobStore, Migration, SchemaTooNew
from bot.store_postgres import PostgresJobStore, StoreUnavailable, load_pg_migrations, redact_url
from tests import test_store as sqlite_suite
from tests.test_store import GUILD_A, GUILD_B, GUILD_C, FakeClock, claim_all, drive_to, new_job

if TYPE_CHECKING:
    from tests.pg import PostgresServer

pytest_plugins = ["tests.pg"]  # the pg_server and pg_url fixtures (imported by pytest, not here)

ROOT = Path(__file__).resolve().parent.parent

# Tests of tests/test_store.py that are not run again here, and why. Every other test of that file that
# uses the `store` fixture runs below against PostgreSQL (the `store` and `clock` fixtures of this module
# replace that file's). Where the behaviour is not SQLite's own, a PostgreSQL counterpart follows below.
NOT_RERUN: dict[str, str] = {
    "test_new_database_is_created_with_parent_folders_wal_and_latest_schema": (
        "SQLite file, folders and WAL; counterpart: test_new_database_gets_the_latest_schema"
    ),
    "test_reopening_a_current_database_keeps_jobs_and_version": "opens a file path; counterpart below",
    "test_old_database_is_upgraded_in_place_keeping_its_jobs": "SQLite migration SQL; counterpart below",
    "test_failed_migration_rolls_back_and_leaves_the_old_version": "sqlite3 errors; counterpart below",
    "test_database_from_a_newer_bot_is_refused_and_left_untouched": "PRAGMA user_version; counterpart below",
    "test_split_statements_keeps_trigger_bodies_and_quoted_semicolons_whole": (
        "SQLite's script splitter; PostgreSQL runs a migration script whole"
    ),
    "test_shipped_migrations_are_numbered_from_one_without_gaps": (
        "bot/migrations; counterpart: test_shipped_pg_migrations_are_numbered_from_one_without_gaps"
    ),
    "test_claim_persists_backend_and_prompt_id_before_returning": "reads the file with sqlite3; counterpart below",
    "test_round_robin_interleaves_and_drops_empty_queues": "a pure function of bot.jobs, no store",
    "test_overall_position_counts_earlier_rounds_of_every_guild": "a pure function of bot.jobs, no store",
    "test_positions_predict_the_claim_order_exactly": "opens files in tmp_path; counterpart below",
    "test_sql_trigger_enforces_the_same_state_machine_as_python": "sqlite3 errors; counterpart below",
    "test_completed_job_cannot_go_back_to_running_even_through_raw_sql": "sqlite3; counterpart below",
    "test_concurrent_commands_from_two_connections_cannot_exceed_a_cap": "opens a file twice; counterpart below",
    "test_restart_after_a_crash_finds_in_flight_jobs_and_keeps_the_queue": (
        "copies the SQLite file and WAL; counterparts: the restart and terminate tests below"
    ),
    "test_claim_queries_use_indexes_not_table_scans": "EXPLAIN QUERY PLAN lines; counterpart on 10k jobs below",
    "test_claiming_among_ten_thousand_waiting_jobs_is_fast_and_fair": "fills the file with sqlite3; counterpart below",
}

RERUN: dict[str, Callable[..., Any]] = {
    name: test
    for name, test in vars(sqlite_suite).items()
    if name.startswith("test_") and callable(test) and name not in NOT_RERUN
}
globals().update(RERUN)  # collected here, so they get this module's `store` and `clock` fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(pg_url: str, clock: FakeClock) -> AsyncIterator[PostgresJobStore]:
    opened = await PostgresJobStore.open(pg_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection, as another process (or an operator with psql) would have."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def dispatch_counts_match(url: str) -> bool:
    """The trigger-kept waiting counts equal the real number of queued jobs."""
    async with raw(url) as conn:
        wrong = await conn.fetchval(
            "SELECT (SELECT count(*) FROM dispatch_guilds AS g WHERE g.waiting <> (SELECT count(*) FROM jobs AS j "
            "WHERE j.status = 'queued' AND j.guild_id = g.guild_id)) + (SELECT count(*) FROM dispatch_users AS u "
            "WHERE u.waiting <> (SELECT count(*) FROM jobs AS j WHERE j.status = 'queued' "
            "AND j.guild_id = u.guild_id AND j.user_id = u.user_id))"
        )
    return wrong == 0


async def fill(
    url: str, owners: list[tuple[int, int]], models: tuple[str | None, ...] = ("sdxl", "flux")
) -> None:
    """Insert queued jobs for `owners` behind the store's back (the triggers keep the dispatch state)."""
    async with raw(url) as conn:
        await conn.copy_records_to_table(
            "jobs",
            columns=[
                "guild_id",
                "channel_id",
                "user_id",
                "kind",
                "prompt",
                "model",
                "created_at",
                "queued_at",
            ],
            records=[
                (g, 1, u, "imagine", f"prompt {i}", models[i % len(models)], 1000.0 + i, 1000.0 + i)
                for i, (g, u) in enumerate(owners)
            ],
        )


def test_every_sqlite_store_test_is_rerun_or_excluded_with_a_reason() -> None:
    names = {name for name in vars(sqlite_suite) if name.startswith("test_")}
    assert set(NOT_RERUN) <= names, "NOT_RERUN names tests that no longer exist"
    assert all(reason for reason in NOT_RERUN.values())
    for name, test in RERUN.items():
        asked = set(inspect.signature(test).parameters)
        assert not asked & {"db_path", "tmp_path"}, f"{name} needs a file: exclude it and write a counterpart"
        assert globals()[name] is test, f"{name} is rerun and also redefined here"


def test_postgres_store_has_the_sqlite_store_public_api() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(f) for n, f in vars(cls).items() if callable(f) and not n.startswith("_")
        }

    sqlite_api, pg_api = public(JobStore), public(PostgresJobStore)
    assert set(pg_api) - set(sqlite_api) == {"import_rows", "reset_id_sequence", "is_empty"}
    for name, signature in sqlite_api.items():
        if name == "open":  # a URL and pool sizes instead of a path and a busy timeout
            continue
        theirs = pg_api[name].parameters
        assert [(p.name, p.kind, p.default is p.empty) for p in signature.parameters.values()] == [
            (p.name, p.kind, p.default is p.empty) for p in theirs.values()
        ], name
        assert inspect.iscoroutinefunction(getattr(PostgresJobStore, name)) == inspect.iscoroutinefunction(
            getattr(JobStore, name)
        ), name


# --------------------------------------------------------------------------------- migrations


async def test_new_database_gets_the_latest_schema(pg_url: str) -> None:
    async with await PostgresJobStore.open(pg_url) as store:
        assert await store.schema_version() == len(load_pg_migrations()) >= 1
        assert await store.is_empty()
    async with raw(pg_url) as conn:
        versions = [
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    assert versions == list(range(1, len(load_pg_migrations()) + 1))


async def test_schema_has_the_sqlite_tables_columns_and_indexes(tmp_path: Path, pg_url: str) -> None:
    async with await JobStore.open(tmp_path / "jobs.db"):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as lite:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite_columns = {
            (t, r[1])
            for t in tables
            if not t.startswith("sqlite_")
            for r in lite.execute(f"PRAGMA table_info({t})")
        }
        sqlite_indexes = {
            r[0]
            for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        }
    async with await PostgresJobStore.open(pg_url), raw(pg_url) as conn:
        pg_columns = {
            (r["table_name"], r["column_name"])
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
        pg_indexes = {
            r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
    # dispatch_state is SQLite's served counter; PostgreSQL has a sequence (dispatch_served_seq).
    assert {c for c in sqlite_columns if c[0] != "dispatch_state"} <= pg_columns
    assert pg_columns - sqlite_columns <= {
        ("jobs", "image_prompt"),
        ("schema_migrations", "version"),
        ("schema_migrations", "name"),
        ("schema_migrations", "applied_at"),
    }
    assert sqlite_indexes <= pg_indexes


async def test_reopening_a_current_database_keeps_jobs_and_version(pg_url: str) -> None:
    async with await PostgresJobStore.open(pg_url) as store:
        job = await store.enqueue(new_job())
        version = await store.schema_version()
    async with await PostgresJobStore.open(pg_url) as store:
        assert await store.schema_version() == version
        assert await store.get(job.id) == job


async def test_old_database_is_upgraded_in_place_keeping_its_jobs(pg_url: str) -> None:
    shipped = load_pg_migrations()
    async with await PostgresJobStore.open(pg_url, migrations=shipped) as store:
        job = await store.enqueue(new_job(prompt="kept across the upgrade"))
    upgrade = Migration(
        len(shipped) + 1,
        "add_note",
        "ALTER TABLE jobs ADD COLUMN note TEXT;\n"
        "UPDATE jobs SET note = 'upgraded; ok';\n"
        "CREATE FUNCTION note_guard() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN PERFORM 1; PERFORM 2; RETURN NEW; END; $$;\n"
        "CREATE TRIGGER note_guard BEFORE UPDATE OF note ON jobs FOR EACH ROW EXECUTE FUNCTION note_guard();\n",
    )
    async with await PostgresJobStore.open(pg_url, migrations=[*shipped, upgrade]) as store:
        assert await store.schema_version() == upgrade.version
        assert (await store.get(job.id)) == job
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT note FROM jobs") == "upgraded; ok"


async def test_failed_migration_rolls_back_and_leaves_the_old_version(pg_url: str) -> None:
    shipped = load_pg_migrations()
    async with await PostgresJobStore.open(pg_url, migrations=shipped):
        pass
    broken = Migration(
        len(shipped) + 1, "broken", "CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;"
    )
    with pytest.raises(asyncpg.UndefinedTableError, match="no_such_table"):
        await PostgresJobStore.open(pg_url, migrations=[*shipped, broken])
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == len(shipped)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None


async def test_database_from_a_newer_bot_is_refused_and_left_untouched(pg_url: str) -> None:
    async with await PostgresJobStore.open(pg_url):
        pass
    newer = len(load_pg_migrations()) + 5
    async with raw(pg_url) as conn:
        await conn.execute("INSERT INTO schema_migrations VALUES ($1, 'from the future', 0)", newer)
    with pytest.raises(SchemaTooNew, match=rf"version {newer}.*only knows up to {len(load_pg_migrations())}"):
        await PostgresJobStore.open(pg_url)
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == newer


async def test_stores_opening_a_new_database_at_once_migrate_it_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresJobStore.open(pg_url) for _ in range(3)))
    try:
        assert {await s.schema_version() for s in stores} == {len(load_pg_migrations())}
        job = await stores[0].enqueue(new_job())
        assert await stores[2].get(job.id) == job
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(load_pg_migrations())


def test_shipped_pg_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_pg_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_pg_migrations_are_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "migrations_pg/*.sql" in project["tool"]["setuptools"]["package-data"]["bot"]
    assert any(d.startswith("asyncpg") for d in project["project"]["dependencies"])
    assert any(d.startswith("pgserver") for d in project["project"]["optional-dependencies"]["test"])


# ------------------------------------------------------------------------------ claims, triggers


async def test_claim_persists_backend_and_prompt_id_before_returning(
    store: PostgresJobStore, pg_url: str, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    clock.frozen = True

    claimed = await store.claim_next("gpu1", prompt_id_factory=lambda: "c0ffee00-prompt")

    assert claimed is not None and claimed.id == job.id
    assert (claimed.status, claimed.backend, claimed.prompt_id) == (
        JobStatus.SUBMITTED,
        "gpu1",
        "c0ffee00-prompt",
    )
    assert claimed.submitted_at == clock.now
    async with raw(pg_url) as conn:  # committed, visible to another connection, before anything is posted
        assert [tuple(r) for r in await conn.fetch("SELECT status, prompt_id FROM jobs")] == [
            ("submitted", "c0ffee00-prompt")
        ]
    assert await store.get_by_prompt_id("c0ffee00-prompt") == claimed


_jobs = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=14)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=_jobs,
    claims=st.integers(0, 8),
    requeues=st.integers(0, 3),
    after=_jobs,
    frozen_clock=st.booleans(),
)
async def test_positions_predict_the_claim_order_exactly(
    store: PostgresJobStore,
    pg_url: str,
    clock: FakeClock,
    before: list[tuple[int, int]],
    claims: int,
    requeues: int,
    after: list[tuple[int, int]],
    frozen_clock: bool,
) -> None:
    async with raw(pg_url) as conn:  # each example starts from an empty database
        await conn.execute(
            "TRUNCATE jobs, job_outputs, dispatch_guilds, dispatch_users RESTART IDENTITY;"
            "ALTER SEQUENCE dispatch_served_seq RESTART"
        )
    clock.frozen = frozen_clock  # equal timestamps: FIFO falls back to the job id
    for guild, user in before:
        await store.enqueue(new_job(guild, user))
    taken = [job for _ in range(claims) if (job := await store.claim_next("gpu0"))]
    for job in taken[:requeues]:
        await store.requeue(job.id, "backend restarted")
    for guild, user in after:
        await store.enqueue(new_job(guild, user))

    waiting = [
        job for guild in (0, 1, 2) for job in await store.list_guild_jobs(guild, [JobStatus.QUEUED], 1000)
    ]
    local = {guild: await store.positions(guild) for guild in (0, 1, 2)}
    overall = {job.id: await store.overall_position_of(job.id) for job in waiting}
    assert {job.id: await store.position_of(job.id) for job in waiting} == {
        job_id: place for places in local.values() for job_id, place in places.items()
    }
    assert await dispatch_counts_match(pg_url)

    claimed = await claim_all(store)

    assert [job.id for job in claimed] == sorted(overall, key=lambda job_id: overall[job_id])
    for guild, places in local.items():
        assert [job.id for job in claimed if job.guild_id == guild] == sorted(places, key=places.__getitem__)
    assert sorted(overall.values()) == list(range(1, len(waiting) + 1))  # type: ignore[type-var]


async def test_sql_trigger_enforces_the_same_state_machine_as_python(
    store: PostgresJobStore, pg_url: str
) -> None:
    async with raw(pg_url) as conn:
        for source, target in itertools.permutations(JobStatus, 2):
            tx = conn.transaction()
            await tx.start()
            await conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, status, created_at, queued_at) "
                "VALUES (1, 1, 1, 'imagine', 'p', $1, 0, 0)",
                source.value,
            )
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(
                        "UPDATE jobs SET status = $1 WHERE status = $2", target.value, source.value
                    )
                allowed = True
            except asyncpg.CheckViolationError:
                allowed = False
            await tx.rollback()
            assert allowed == can_transition(source, target), (source, target)


async def test_completed_job_cannot_go_back_to_running_even_through_raw_sql(
    store: PostgresJobStore, pg_url: str
) -> None:
    job = await drive_to(store, JobStatus.COMPLETED)
    async with raw(pg_url) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="illegal job status transition"):
            await conn.execute("UPDATE jobs SET status = 'running' WHERE id = $1", job.id)
        with pytest.raises(asyncpg.CheckViolationError, match="guild_id and user_id never change"):
            await conn.execute("UPDATE jobs SET user_id = user_id + 1 WHERE id = $1", job.id)
        await conn.execute("UPDATE jobs SET user_id = user_id, guild_id = guild_id WHERE id = $1", job.id)
    with pytest.raises(InvalidTransition):
        await store.mark_running(job.id)


# ------------------------------------------------------------------------- performance, 10k jobs


def _ten_thousand_owners() -> list[tuple[int, int]]:
    owners = [(10_000 + guild, 500 + user) for guild in range(100) for user in range(10) for _ in range(10)]
    random.Random(7).shuffle(owners)
    return owners


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
async def test_claim_queries_use_indexes_not_table_scans(
    store: PostgresJobStore, pg_url: str, analyzed: bool
) -> None:
    await fill(pg_url, _ten_thousand_owners(), models=("sdxl", "flux", None))
    async with raw(pg_url) as conn:  # and a long history, so a scan would really cost
        await conn.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, status, created_at, queued_at, "
            "finished_at) SELECT 10000 + g % 100, 1, 500, 'imagine', 'old', 'completed', 1, 1, 2 "
            "FROM generate_series(1, 20000) AS g"
        )
        if analyzed:
            await conn.execute("ANALYZE")
    for models in (None, set(), {"sdxl", "flux"}):
        plan = "\n".join(await store.explain_claim(models))
        assert "Seq Scan" not in plan, plan
        assert "jobs_pkey" in plan and "idx_dispatch_guilds_next" in plan, plan
        assert "idx_dispatch_users_next" in plan and "idx_jobs_queued" in plan, plan


async def test_claiming_among_ten_thousand_waiting_jobs_is_fast_and_fair(pg_url: str) -> None:
    async with await PostgresJobStore.open(pg_url):
        pass
    await fill(pg_url, _ten_thousand_owners())
    assert await dispatch_counts_match(pg_url)

    async with await PostgresJobStore.open(pg_url) as store:
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
        f"\nPostgreSQL claim_next over 10k waiting jobs: p50 {statistics.median(timings):.3f} ms, "
        f"p99 {quantiles[98]:.3f} ms (model-restricted p50 {statistics.median(timings[500:]):.3f} ms); "
        f"positions() for a 100-job guild {positions_ms:.2f} ms"
    )
    assert statistics.median(timings) < 100  # the target, with a wide margin


# ----------------------------------------------------------------- many processes, one database


async def test_two_stores_claiming_at_once_never_share_a_job_and_keep_the_round_robin(pg_url: str) -> None:
    clock = FakeClock()  # one clock: each claim reads it while it holds the claim lock
    async with (
        await PostgresJobStore.open(pg_url, clock=clock, max_size=4) as one,
        await PostgresJobStore.open(pg_url, clock=clock, max_size=4) as two,
    ):
        for i in range(40):
            await (one if i % 2 else two).enqueue(new_job(GUILD_A + i % 3, 1 + i % 5, f"job {i}"))
        queued = [
            j for g in (GUILD_A, GUILD_B, GUILD_C) for j in await one.list_guild_jobs(g, [JobStatus.QUEUED])
        ]
        expected = sorted([(await one.overall_position_of(j.id), j.id) for j in queued])  # type: ignore[type-var]

        results = await asyncio.gather(*((one if i % 2 else two).claim_next(f"gpu{i}") for i in range(50)))

        claimed = [job for job in results if job is not None]
        assert len(claimed) == 40 and len({job.id for job in claimed}) == 40
        in_claim_order = sorted(claimed, key=lambda job: job.submitted_at or 0.0)
        assert [job.id for job in in_claim_order] == [job_id for _, job_id in expected]
        for job in claimed:
            assert await two.get(job.id) == job
    assert await dispatch_counts_match(pg_url)


async def test_concurrent_commands_from_two_stores_cannot_exceed_a_cap(pg_url: str, clock: FakeClock) -> None:
    limits = EnqueueLimits(per_user_active=4, per_guild_queued=6)
    async with (
        await PostgresJobStore.open(pg_url, clock=clock, max_size=8) as one,
        await PostgresJobStore.open(pg_url, clock=clock, max_size=8) as two,
    ):
        # 15 one-job commands from 3 members, racing through two pools: the guild cap of 6 must stop
        # them all at exactly 6, and nobody may pass 4.
        attempts = [(one if i % 2 else two).enqueue(new_job(user=1 + i % 3), limits) for i in range(15)]
        results = await asyncio.gather(*attempts, return_exceptions=True)

        accepted = [r for r in results if isinstance(r, Job)]
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(accepted) + len(refused) == 15
        assert len(accepted) == 6 == await one.count_queued_for_guild(GUILD_A)
        assert {r.kind for r in refused} <= {LimitKind.PER_GUILD_QUEUED, LimitKind.PER_USER_ACTIVE}
        for user in (1, 2, 3):
            assert await two.count_active_for_user(GUILD_A, user) <= 4

        # One member in three guilds at once: the per-minute limit counts across all of them.
        rate = EnqueueLimits(per_user_per_minute=5)
        attempts = [
            (one if i % 2 else two).enqueue(new_job(GUILD_A + i % 3, user=9), rate) for i in range(12)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert sum(isinstance(r, Job) for r in results) == 5 == await one.count_created_since(9, 0)
        assert all(r.kind is LimitKind.PER_USER_PER_MINUTE for r in results if isinstance(r, LimitExceeded))
    assert await dispatch_counts_match(pg_url)


async def test_claims_racing_cancels_never_claim_a_cancelled_job(pg_url: str) -> None:
    async with (
        await PostgresJobStore.open(pg_url, max_size=6) as scheduler,
        await PostgresJobStore.open(pg_url, max_size=6) as members,
    ):
        jobs = [await members.enqueue(new_job(GUILD_A + i % 2, 1 + i % 4)) for i in range(30)]

        async def cancel(job_id: int) -> JobStatus | None:
            with contextlib.suppress(InvalidTransition):
                return await members.cancel(job_id)
            return None

        results = await asyncio.gather(
            *(scheduler.claim_next("gpu0") for _ in range(20)), *(cancel(j.id) for j in jobs[::2])
        )
        claimed = [r for r in results[:20] if r is not None]
        cancelled_while_queued = {
            j.id for j, r in zip(jobs[::2], results[20:], strict=True) if r is JobStatus.QUEUED
        }

        assert not {job.id for job in claimed} & cancelled_while_queued
        assert len({job.id for job in claimed}) == len(claimed)
        waiting = await members.count_queued_for_guild(GUILD_A) + await members.count_queued_for_guild(
            GUILD_B
        )
        assert len(claimed) == min(20, len(jobs) - len(cancelled_while_queued))
        assert waiting == len(jobs) - len(cancelled_while_queued) - len(claimed)
    assert await dispatch_counts_match(pg_url)


# -------------------------------------------------------------------------------- passwords


def test_redact_url_keeps_the_user_and_hides_the_password() -> None:
    assert (
        redact_url("postgresql://imagine:s3cret@db.example:5432/bot")
        == "postgresql://imagine:***@db.example:5432/bot"
    )
    assert redact_url("postgres://imagine@db/bot") == "postgres://imagine@db/bot"
    assert redact_url("postgresql://u:p%40ss@h/db?sslmode=require&password=two") == (
        "postgresql://u:***@h/db?sslmode=require&password=***"
    )
    assert redact_url("postgresql://u:p@ss:w@h,h2:5433/db") == "postgresql://u:***@h,h2:5433/db"
    assert (
        redact_url("host=db user=u password=hunter2 dbname=bot") == "host=db user=u password=*** dbname=bot"
    )
    assert "oops" not in redact_url("postgresql://u:oops@[::1/db")


def _everything_shown(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("case", ["wrong password", "unknown role", "nothing listening"])
async def test_password_never_appears_when_the_server_refuses_the_login(
    pg_server: PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    secret = "s3cr3t-Pa55:w0rd"
    database = pg_url.rpartition("/")[2].partition("?")[0]
    async with raw(pg_url) as conn:
        await conn.execute("DROP ROLE IF EXISTS imagine_login_test")
        await conn.execute("CREATE ROLE imagine_login_test LOGIN PASSWORD 'the-right-one'")
    try:
        url = pg_server.tcp_url(database, user="imagine_login_test", password=secret)
        if case == "unknown role":
            url = pg_server.tcp_url(database, user="nobody_here", password=secret)
        elif case == "nothing listening":
            url = f"postgresql://imagine:{secret}@127.0.0.1:9/{database}"
        caplog.set_level(logging.DEBUG)
        with pytest.raises(StoreUnavailable) as caught:
            await PostgresJobStore.open(url, connect_timeout_s=5)
        shown = _everything_shown(caught.value) + caplog.text
        assert "***" in str(caught.value)
        assert secret not in shown and "s3cr3t" not in shown
    finally:
        async with raw(pg_url) as conn:
            await conn.execute("DROP ROLE IF EXISTS imagine_login_test")


async def test_password_stays_out_of_the_store_repr_and_logs(
    pg_server: PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "an0ther-s3cret"
    database = pg_url.rpartition("/")[2].partition("?")[0]
    async with await PostgresJobStore.open(pg_url):  # the tables belong to the superuser, not the test role
        pass
    async with raw(pg_url) as conn:
        await conn.execute("DROP ROLE IF EXISTS imagine_repr_test")
        await conn.execute(f"CREATE ROLE imagine_repr_test LOGIN SUPERUSER PASSWORD '{secret}'")
    caplog.set_level(logging.DEBUG)
    try:
        url = pg_server.tcp_url(database, user="imagine_repr_test", password=secret)
        async with await PostgresJobStore.open(url, min_size=1, max_size=2) as store:
            job = await store.enqueue(new_job())
            assert secret not in repr(store) and "imagine_repr_test:***@" in repr(store)
            await terminate_backends(pg_url, database)
            await store.get(job.id)  # survived, with a warning in the log
    finally:
        async with raw(pg_url) as conn:
            await terminate_backends(pg_url, database, user="imagine_repr_test")
            await conn.execute("DROP ROLE IF EXISTS imagine_repr_test")
    assert secret not in caplog.text


# ------------------------------------------------------------------------------- reconnects


async def terminate_backends(url: str, database: str, user: str | None = None) -> int:
    """End every other session on `database` (what a failover or an operator's pg_terminate_backend does)."""
    async with raw(url) as conn:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 "
                "AND pid <> pg_backend_pid() AND ($2::text IS NULL OR usename = $2)",
                database,
                user,
            )
        )


async def test_terminated_connections_are_survived_by_the_next_call(pg_url: str) -> None:
    database = pg_url.rpartition("/")[2].partition("?")[0]
    async with await PostgresJobStore.open(pg_url, min_size=3, max_size=3) as store:
        await asyncio.gather(*(store.enqueue(new_job(user=u)) for u in range(3)))  # warm every connection
        for call in (
            lambda: store.get(1),
            lambda: store.claim_next("gpu0"),
            lambda: store.enqueue(new_job(user=7)),
            lambda: store.positions(GUILD_A),
            lambda: store.mark_running(1),
        ):
            assert await terminate_backends(pg_url, database) >= 1
            await call()
        assert [job.status for job in await store.list_guild_jobs(GUILD_A)].count(JobStatus.QUEUED) == 3


async def test_a_postgres_restart_is_survived_by_the_next_call(
    pg_server: PostgresServer, pg_url: str
) -> None:
    database = pg_url.rpartition("/")[2].partition("?")[0]
    async with await PostgresJobStore.open(pg_url, min_size=2, max_size=2) as store:
        first = await store.enqueue(new_job(prompt="before the restart"))
        if pg_server.can_restart:
            pg_server.stop()
            try:
                with pytest.raises(StoreUnavailable, match="unavailable") as caught:
                    await store.get(first.id)  # down: the caller is told, after one more try
                assert not caught.value.outcome_unknown
            finally:
                pg_server.start()
        else:  # a server the tests do not own: every session is cut, as a restart would
            await terminate_backends(pg_url, database)
        assert await store.get(first.id) == first
        second = await store.enqueue(new_job(prompt="after the restart"))
        assert (await store.claim_next("gpu0")).id == first.id  # type: ignore[union-attr]
        assert await store.positions(GUILD_A) == {second.id: 1}


KILL_AT_COMMIT = """
CREATE SEQUENCE kill_once;
CREATE FUNCTION kill_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('kill_once') = 1 THEN  -- a sequence, not a table: the kill rolls the transaction back
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NULL;
END; $$;
CREATE CONSTRAINT TRIGGER kill_at_commit AFTER INSERT OR UPDATE ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kill_at_commit();
"""


async def test_a_claim_whose_commit_was_cut_is_made_again_exactly_once(
    store: PostgresJobStore, pg_url: str
) -> None:
    jobs = [await store.enqueue(new_job(GUILD_A + i, i)) for i in range(3)]
    async with raw(pg_url) as conn:
        await conn.execute(KILL_AT_COMMIT)

    claimed = await store.claim_next("gpu0", prompt_id_factory=lambda: "only-once")

    assert claimed is not None and claimed.id == jobs[0].id and claimed.prompt_id == "only-once"
    assert [j.status for j in await store.list_guild_jobs(GUILD_A)] == [JobStatus.SUBMITTED]
    assert await store.count_queued_for_guild(GUILD_B) == 1 == await store.count_queued_for_guild(GUILD_C)
    assert await dispatch_counts_match(pg_url)


async def test_an_enqueue_whose_commit_was_cut_reports_an_unknown_outcome(
    store: PostgresJobStore, pg_url: str
) -> None:
    async with raw(pg_url) as conn:
        await conn.execute(KILL_AT_COMMIT)

    with pytest.raises(StoreUnavailable) as caught:
        await store.enqueue(new_job())

    assert caught.value.outcome_unknown and "may or may not" in str(caught.value)
    assert await store.count_queued_for_guild(GUILD_A) == 0  # here it was rolled back
    assert (await store.enqueue(new_job())).status is JobStatus.QUEUED


# ------------------------------------------------------------------------------- copy-store


async def test_import_rows_continues_a_sqlite_store_with_the_same_ids_and_order(
    tmp_path: Path, pg_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "jobs.db"
    async with await JobStore.open(path, clock=clock) as lite:
        done = await drive_to(lite, JobStatus.COMPLETED, user=5)
        await lite.enqueue(new_job(parent_job_id=done.id, parent_index=0, user=5))
        for i in range(12):
            await lite.enqueue(new_job(GUILD_A + i % 3, 1 + i % 4, f"waiting {i}"))
        for _ in range(4):
            await lite.claim_next("gpu0")
        running = await lite.claim_next("gpu1")
        assert running is not None
        await lite.mark_running(running.id)
        newest = await drive_to(lite, JobStatus.FAILED, guild=GUILD_B, user=3)
        await lite.update_user_settings(5, model="sdxl", aspect="16:9")
        clock.advance(10)
        await lite.purge_finished_before(clock.now - 5)  # the newest id is gone, but stays used
        with contextlib.closing(sqlite3.connect(path)) as conn:
            job_ids = [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY id")]
            guild_order = conn.execute(
                "SELECT guild_id, served_seq, joined_seq FROM dispatch_guilds"
            ).fetchall()
            user_order = conn.execute(
                "SELECT guild_id, user_id, served_seq, joined_seq FROM dispatch_users"
            ).fetchall()
            last_id = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()[0]
        source_jobs = [job for i in job_ids if (job := await lite.get(i)) is not None]
        source_outputs = [o for i in job_ids for o in await lite.outputs(i)]
        saved = await lite.get_user_settings(5)
        positions = {g: await lite.positions(g) for g in (GUILD_A, GUILD_B, GUILD_C)}
        assert saved is not None and last_id == newest.id and len(source_jobs) == len(job_ids)

    async with await PostgresJobStore.open(pg_url, clock=clock) as store:
        assert await store.is_empty()
        count = await store.import_rows(
            source_jobs,
            source_outputs,
            [saved],
            guild_order=guild_order,
            user_order=user_order,
            last_id=last_id,
        )
        assert count == len(source_jobs) and not await store.is_empty()
        assert [await store.get(i) for i in job_ids] == source_jobs
        assert [o for i in job_ids for o in await store.outputs(i)] == source_outputs
        assert await store.get_user_settings(5) == saved
        assert {g: await store.positions(g) for g in (GUILD_A, GUILD_B, GUILD_C)} == positions
        assert await dispatch_counts_match(pg_url)
        assert await store.reset_id_sequence() == last_id  # never backwards

        pg_order = [job.id for job in await claim_all(store)]
        assert (await store.enqueue(new_job())).id == last_id + 1
    async with await JobStore.open(path, clock=clock) as lite:
        assert [job.id for job in await claim_all(lite)] == pg_order
