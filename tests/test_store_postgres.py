"""What only the PostgreSQL engine has: many processes on one database, its migrations, reconnects, copy-store.

The `Store` contract itself is proven on PostgreSQL by tests/store/ (every engine-neutral test runs once
per engine of tests/store_engines.py). Here: what processes sharing one database need (claims and limits
across stores, leases on the database clock, migrations racing), its own schema and query plans,
surviving a server restart or terminated connections, never showing the password, and `import_rows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import sqlite3
import statistics
import time
import tomllib
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from bot.config import DatabaseUrl
from bot.jobs import (
    ACTIVE_STATUSES,
    EnqueueLimits,
    ImagePrompt,
    InvalidTransition,
    Job,
    JobKind,
    JobStatus,
    LimitExceeded,
    LimitKind,
    can_transition,
    round_robin,
)
from bot.store import (
    JobStore,
    Migration,
    PostgresStore,
    SchemaTooNew,
    Store,
    StoreUnavailable,
    load_pg_migrations,
    open_store,
)
from bot.store.postgres.retention import IMAGE_PROMPT_FILES_SQL
from tests.store.helpers import GUILD_A, GUILD_B, GUILD_C, FakeClock, claim_all, drive_to, enqueue, new_job
from tests.store_engines import postgres_dispatch_counts_match as dispatch_counts_match

if TYPE_CHECKING:
    from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(pg_url: str, clock: FakeClock) -> AsyncIterator[PostgresStore]:
    opened = await PostgresStore.open(pg_url, clock=clock)
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


def database_of(url: str) -> str:
    return url.rpartition("/")[2].partition("?")[0]


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


async def active_jobs(store: Store, guild_id: int, user_id: int) -> int:
    return len(await store.list_user_jobs(user_id, guild_id, ACTIVE_STATUSES, limit=1000))


# --------------------------------------------------------------------------------- migrations


async def test_new_database_gets_the_latest_schema(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url) as store:
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
    async with await PostgresStore.open(pg_url), raw(pg_url) as conn:
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
    assert {table for table, _ in pg_columns - sqlite_columns} == {"schema_migrations", "job_previews"}
    assert sqlite_indexes <= pg_indexes


async def test_old_database_is_upgraded_in_place_keeping_its_jobs(pg_url: str) -> None:
    shipped = load_pg_migrations()
    async with await PostgresStore.open(pg_url, migrations=shipped) as store:
        job = await enqueue(store, new_job(prompt="kept across the upgrade"))
    upgrade = Migration(
        len(shipped) + 1,
        "add_note",
        "ALTER TABLE jobs ADD COLUMN note TEXT;\n"
        "UPDATE jobs SET note = 'upgraded; ok';\n"
        "CREATE FUNCTION note_guard() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN PERFORM 1; PERFORM 2; RETURN NEW; END; $$;\n"
        "CREATE TRIGGER note_guard BEFORE UPDATE OF note ON jobs FOR EACH ROW EXECUTE FUNCTION note_guard();\n",
    )
    async with await PostgresStore.open(pg_url, migrations=[*shipped, upgrade]) as store:
        assert await store.schema_version() == upgrade.version
        assert (await store.get(job.id)) == job
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT note FROM jobs") == "upgraded; ok"


async def test_failed_migration_rolls_back_and_leaves_the_old_version(pg_url: str) -> None:
    shipped = load_pg_migrations()
    async with await PostgresStore.open(pg_url, migrations=shipped):
        pass
    broken = Migration(
        len(shipped) + 1, "broken", "CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;"
    )
    with pytest.raises(asyncpg.UndefinedTableError, match="no_such_table"):
        await PostgresStore.open(pg_url, migrations=[*shipped, broken])
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == len(shipped)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None


async def test_database_from_a_newer_bot_is_refused_and_left_untouched(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url):
        pass
    newer = len(load_pg_migrations()) + 5
    async with raw(pg_url) as conn:
        await conn.execute("INSERT INTO schema_migrations VALUES ($1, 'from the future', 0)", newer)
    with pytest.raises(SchemaTooNew, match=rf"version {newer}.*only knows up to {len(load_pg_migrations())}"):
        await PostgresStore.open(pg_url)
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == newer


async def test_stores_opening_a_new_database_at_once_migrate_it_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(3)))
    try:
        assert {await s.schema_version() for s in stores} == {len(load_pg_migrations())}
        job = await enqueue(stores[0], new_job())
        assert await stores[2].get(job.id) == job
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    async with raw(pg_url) as conn:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(load_pg_migrations())


def test_pg_migrations_are_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "migrations_pg/*.sql" in project["tool"]["setuptools"]["package-data"]["bot"]
    assert any(d.startswith("asyncpg") for d in project["project"]["dependencies"])
    assert any(d.startswith("pgserver") for d in project["project"]["optional-dependencies"]["test"])


# ----------------------------------------------------------------------------- the raw schema


async def test_claim_is_committed_before_it_returns(
    store: PostgresStore, pg_url: str, clock: FakeClock
) -> None:
    job = await enqueue(store, new_job())
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
        rows = await conn.fetch("SELECT status, prompt_id FROM jobs")
    assert [tuple(r) for r in rows] == [("submitted", "c0ffee00-prompt")]


async def test_sql_trigger_enforces_the_same_state_machine_as_python(
    store: PostgresStore, pg_url: str
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
    store: PostgresStore, pg_url: str
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


async def test_image_prompts_are_json_and_found_through_their_index(
    store: PostgresStore, pg_url: str
) -> None:
    image = ImagePrompt("image_prompts/" + "a" * 32 + ".png", 640, 480)
    job = await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image))
    await enqueue(store, new_job())
    assert (await store.get(job.id)).image_prompt == image  # type: ignore[union-attr]
    assert await store.image_prompt_files_in_use() == {image.file}
    async with raw(pg_url) as conn:
        with pytest.raises(asyncpg.InvalidTextRepresentationError):  # the column's CHECK casts to json
            await conn.execute("UPDATE jobs SET image_prompt = 'not json' WHERE id = $1", job.id)
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + IMAGE_PROMPT_FILES_SQL))
    assert "idx_jobs_image_prompt_file" in plan, plan


async def test_a_jobs_preview_goes_with_the_job(store: PostgresStore, pg_url: str, clock: FakeClock) -> None:
    job = await drive_to(store, JobStatus.COMPLETED)
    kept = await drive_to(store, JobStatus.RUNNING)
    async with raw(pg_url) as conn:
        for job_id in (job.id, kept.id):
            await conn.execute(
                "INSERT INTO job_previews (job_id, mime, data, updated_at) VALUES ($1, 'image/jpeg', $2, 0)",
                job_id,
                b"\xff\xd8 preview",
            )
    await store.purge_finished_before(clock.now + 1)
    async with raw(pg_url) as conn:
        assert [r[0] for r in await conn.fetch("SELECT job_id FROM job_previews")] == [kept.id]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO job_previews (job_id, data, updated_at) VALUES (999, '', 0)")


# --------------------------------------------------------------------------- leases, database clock


async def test_lease_times_come_from_the_database_clock_not_the_stores(pg_url: str) -> None:
    """Two processes whose clocks disagree by two hours still agree on when a lease ends."""
    behind = FakeClock(time.time() - 3600)
    ahead = FakeClock(time.time() + 3600)
    async with (
        await PostgresStore.open(pg_url, clock=behind) as one,
        await PostgresStore.open(pg_url, clock=ahead) as two,
        raw(pg_url) as conn,
    ):
        assert await one.acquire_backend("gpu0", "process-a", 15)
        server_now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
        expires = (await two.backend_leases())["gpu0"].expires_at
        assert server_now + 10 < expires <= server_now + 15
        assert not await two.acquire_backend("gpu0", "process-b", 15)  # its clock says long expired: no
        await conn.execute(
            "UPDATE backend_leases SET expires_at = expires_at - 15"
        )  # the server's time passes
        assert await two.acquire_backend("gpu0", "process-b", 15)
        assert not await one.acquire_backend("gpu0", "process-a", 15)


# ------------------------------------------------------------------------- performance, 10k jobs


def _ten_thousand_owners() -> list[tuple[int, int]]:
    owners = [(10_000 + guild, 500 + user) for guild in range(100) for user in range(10) for _ in range(10)]
    random.Random(7).shuffle(owners)
    return owners


async def test_claim_queries_use_indexes_not_sequential_scans_on_ten_thousand_jobs(
    store: PostgresStore, pg_url: str
) -> None:
    await fill(pg_url, _ten_thousand_owners(), models=("sdxl", "flux", None))
    async with raw(pg_url) as conn:  # and a long history, so a scan would really cost
        await conn.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, kind, prompt, status, created_at, queued_at, "
            "finished_at) SELECT 10000 + g % 100, 1, 500, 'imagine', 'old', 'completed', 1, 1, 2 "
            "FROM generate_series(1, 20000) AS g"
        )
        for statistics_state in ("fresh", "analyzed"):  # no statistics yet, then PostgreSQL's own
            if statistics_state == "analyzed":
                await conn.execute("ANALYZE")
            for models in (None, set(), {"sdxl", "flux"}):
                plan = "\n".join(await store.explain_claim(models))
                assert "Seq Scan" not in plan, (statistics_state, plan)
                assert "jobs_pkey" in plan and "idx_dispatch_guilds_next" in plan, plan
                assert "idx_dispatch_users_next" in plan and "idx_jobs_queued" in plan, plan


async def test_claiming_among_ten_thousand_waiting_jobs_is_fast_and_fair(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url):
        pass
    await fill(pg_url, _ten_thousand_owners())
    assert await dispatch_counts_match(pg_url)

    async with await PostgresStore.open(pg_url) as store:
        places = await store.positions(10_000)
        timings: list[float] = []
        claimed: list[Job] = []
        for i in range(400):
            started = time.perf_counter()
            job = await store.claim_next("gpu0", {"sdxl"} if i >= 300 else None)
            timings.append((time.perf_counter() - started) * 1000)
            assert job is not None
            claimed.append(job)

    for start in range(0, 300, 100):  # three full rounds: every guild once per round
        assert len({job.guild_id for job in claimed[start : start + 100]}) == 100
    first_guild = [job for job in claimed[:300] if job.guild_id == 10_000]
    assert [job.id for job in first_guild] == sorted(places, key=places.__getitem__)[:3]
    assert len({job.user_id for job in first_guild}) == 3
    per_user: dict[tuple[int, int], list[float]] = {}
    for job in claimed:
        per_user.setdefault((job.guild_id, job.user_id), []).append(job.queued_at)
    assert all(times == sorted(times) for times in per_user.values())
    assert all(job.model == "sdxl" for job in claimed[300:])
    assert statistics.median(timings) < 100  # the target, with a wide margin


# ----------------------------------------------------------------- many processes, one database


async def test_two_stores_claiming_at_once_never_share_a_job_and_keep_the_round_robin(pg_url: str) -> None:
    clock = FakeClock()  # one clock: each claim reads it while it holds the claim lock
    async with (
        await PostgresStore.open(pg_url, clock=clock, max_size=4) as one,
        await PostgresStore.open(pg_url, clock=clock, max_size=4) as two,
    ):
        for i in range(40):
            await enqueue(one if i % 2 else two, new_job(GUILD_A + i % 3, 1 + i % 5, f"job {i}"))
        # Nobody was served yet: guilds take turns in the order they first queued, each in its own order.
        expected = round_robin(
            [
                sorted(p, key=p.__getitem__)
                for g in (GUILD_A, GUILD_B, GUILD_C)
                if (p := await one.positions(g))
            ]
        )

        results = await asyncio.gather(*((one if i % 2 else two).claim_next(f"gpu{i}") for i in range(50)))

        claimed = [job for job in results if job is not None]
        assert len(claimed) == 40 and len({job.id for job in claimed}) == 40
        in_claim_order = sorted(claimed, key=lambda job: job.submitted_at or 0.0)
        assert [job.id for job in in_claim_order] == expected
        for job in claimed:
            assert await two.get(job.id) == job
    assert await dispatch_counts_match(pg_url)


async def test_concurrent_commands_from_two_stores_cannot_exceed_a_cap(pg_url: str, clock: FakeClock) -> None:
    limits = EnqueueLimits(per_user_active=4, per_guild_queued=6)
    async with (
        await PostgresStore.open(pg_url, clock=clock, max_size=8) as one,
        await PostgresStore.open(pg_url, clock=clock, max_size=8) as two,
    ):
        # 15 one-job commands from 3 members, racing through two pools: the guild cap of 6 must stop
        # them all at exactly 6, and nobody may pass 4.
        attempts = [enqueue(one if i % 2 else two, new_job(user=1 + i % 3), limits) for i in range(15)]
        results = await asyncio.gather(*attempts, return_exceptions=True)

        accepted = [r for r in results if isinstance(r, Job)]
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(accepted) + len(refused) == 15
        assert len(accepted) == 6 == await one.count_queued_for_guild(GUILD_A)
        assert {r.kind for r in refused} <= {LimitKind.PER_GUILD_QUEUED, LimitKind.PER_USER_ACTIVE}
        for user in (1, 2, 3):
            assert await active_jobs(two, GUILD_A, user) <= 4

        # One member in three guilds at once: the per-minute limit counts across all of them.
        rate = EnqueueLimits(per_user_per_minute=5)
        attempts = [enqueue(one if i % 2 else two, new_job(GUILD_A + i % 3, user=9), rate) for i in range(12)]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert sum(isinstance(r, Job) for r in results) == 5 == len(await one.list_user_jobs(9))
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert all(r.kind is LimitKind.PER_USER_PER_MINUTE and r.current == 5 for r in refused)
    assert await dispatch_counts_match(pg_url)


async def test_claims_racing_cancels_never_claim_a_cancelled_job(pg_url: str) -> None:
    async with (
        await PostgresStore.open(pg_url, max_size=6) as scheduler,
        await PostgresStore.open(pg_url, max_size=6) as members,
    ):
        jobs = [await enqueue(members, new_job(GUILD_A + i % 2, 1 + i % 4)) for i in range(30)]

        async def cancel(job_id: int) -> JobStatus | None:
            with contextlib.suppress(InvalidTransition):
                return await members.cancel(job_id)
            return None

        results = await asyncio.gather(
            *(scheduler.claim_next("gpu0") for _ in range(20)), *(cancel(j.id) for j in jobs[::2])
        )
        claimed = [r for r in results[:20] if isinstance(r, Job)]
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


def _everything_shown(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


async def _open_directly(url: str) -> Store:
    return await PostgresStore.open(url, connect_timeout_s=5)


async def _open_from_config(url: str) -> Store:
    return await open_store(DatabaseUrl(url))


@pytest.mark.parametrize(
    "opener", [_open_directly, _open_from_config], ids=["PostgresStore.open", "open_store"]
)
@pytest.mark.parametrize("case", ["wrong password", "unknown role", "nothing listening"])
async def test_password_never_appears_when_the_server_refuses_the_login(
    pg_server: PostgresServer,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
    case: str,
    opener: Callable[[str], Awaitable[Store]],
) -> None:
    secret = "s3cr3t-Pa55:w0rd"
    database = database_of(pg_url)
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
            await opener(url)
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
    database = database_of(pg_url)
    async with await PostgresStore.open(pg_url):  # the tables belong to the superuser, not the test role
        pass
    async with raw(pg_url) as conn:
        await conn.execute("DROP ROLE IF EXISTS imagine_repr_test")
        await conn.execute(f"CREATE ROLE imagine_repr_test LOGIN SUPERUSER PASSWORD '{secret}'")
    caplog.set_level(logging.DEBUG)
    try:
        url = pg_server.tcp_url(database, user="imagine_repr_test", password=secret)
        async with await PostgresStore.open(url, min_size=1, max_size=2) as store:
            job = await enqueue(store, new_job())
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
    database = database_of(pg_url)
    async with await PostgresStore.open(pg_url, min_size=3, max_size=3) as store:
        await asyncio.gather(*(enqueue(store, new_job(user=u)) for u in range(3)))  # warm every connection
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get(1),
            lambda: store.claim_next("gpu0"),
            lambda: enqueue(store, new_job(user=7)),
            lambda: store.positions(GUILD_A),
            lambda: store.mark_running(1),
            lambda: store.acquire_backend("gpu0", "process-a", 15),
        ]
        for call in calls:
            assert await terminate_backends(pg_url, database) >= 1
            await call()
        assert [job.status for job in await store.list_guild_jobs(GUILD_A)].count(JobStatus.QUEUED) == 3


async def test_a_postgres_restart_is_survived_by_the_next_call(
    pg_server: PostgresServer, pg_url: str
) -> None:
    async with await PostgresStore.open(pg_url, min_size=2, max_size=2) as store:
        first = await enqueue(store, new_job(prompt="before the restart"))
        if pg_server.can_restart:
            pg_server.stop()
            try:
                with pytest.raises(StoreUnavailable, match="unavailable") as caught:
                    await store.get(first.id)  # down: the caller is told, after one more try
                assert not caught.value.outcome_unknown
            finally:
                pg_server.start()
        else:  # a server the tests do not own: every session is cut, as a restart would
            await terminate_backends(pg_url, database_of(pg_url))
        assert await store.get(first.id) == first
        second = await enqueue(store, new_job(prompt="after the restart"))
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
    store: PostgresStore, pg_url: str
) -> None:
    jobs = [await enqueue(store, new_job(GUILD_A + i, i)) for i in range(3)]
    async with raw(pg_url) as conn:
        await conn.execute(KILL_AT_COMMIT)

    claimed = await store.claim_next("gpu0", prompt_id_factory=lambda: "only-once")

    assert claimed is not None and claimed.id == jobs[0].id and claimed.prompt_id == "only-once"
    assert [j.status for j in await store.list_guild_jobs(GUILD_A)] == [JobStatus.SUBMITTED]
    assert await store.count_queued_for_guild(GUILD_B) == 1 == await store.count_queued_for_guild(GUILD_C)
    assert await dispatch_counts_match(pg_url)


async def test_an_enqueue_whose_commit_was_cut_reports_an_unknown_outcome(
    store: PostgresStore, pg_url: str
) -> None:
    async with raw(pg_url) as conn:
        await conn.execute(KILL_AT_COMMIT)

    with pytest.raises(StoreUnavailable) as caught:
        await enqueue(store, new_job())

    assert caught.value.outcome_unknown and "may or may not" in str(caught.value)
    assert await store.count_queued_for_guild(GUILD_A) == 0  # here it was rolled back
    assert (await enqueue(store, new_job())).status is JobStatus.QUEUED


# ------------------------------------------------------------------------------- copy-store


async def test_import_rows_continues_a_sqlite_store_with_the_same_ids_and_order(
    tmp_path: Path, pg_url: str, clock: FakeClock
) -> None:
    path = tmp_path / "jobs.db"
    async with await JobStore.open(path, clock=clock) as lite:
        done = await drive_to(lite, JobStatus.COMPLETED, user=5)
        await enqueue(lite, new_job(parent_job_id=done.id, parent_index=0, user=5))
        image = ImagePrompt("image_prompts/" + "b" * 32 + ".png", 512, 768)
        await enqueue(lite, new_job(GUILD_B, 6, "from a picture", JobKind.IMG2IMG, image_prompt=image))
        for i in range(12):
            await enqueue(lite, new_job(GUILD_A + i % 3, 1 + i % 4, f"waiting {i}"))
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
        assert any(job.image_prompt == image for job in source_jobs)

    async with await PostgresStore.open(pg_url, clock=clock) as store:
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
        assert await store.image_prompt_files_in_use() == {image.file}
        assert {g: await store.positions(g) for g in (GUILD_A, GUILD_B, GUILD_C)} == positions
        assert await dispatch_counts_match(pg_url)
        assert await store.reset_id_sequence() == last_id  # never backwards

        pg_order = [job.id for job in await claim_all(store)]
        assert (await enqueue(store, new_job())).id == last_id + 1
    async with await JobStore.open(path, clock=clock) as lite:
        assert [job.id for job in await claim_all(lite)] == pg_order


async def test_import_rows_refuses_a_taken_id_and_imports_nothing(store: PostgresStore) -> None:
    job = await enqueue(store, new_job())
    copied = dataclasses.replace(job, id=job.id + 100, batch_id=job.id + 100, prompt="copied")
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.import_rows([copied, job])
    assert await store.get(copied.id) is None
    assert await store.count_queued_for_guild(GUILD_A) == 1
