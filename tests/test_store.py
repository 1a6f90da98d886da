"""The SQLite job store: migrations, fair claiming, positions, transitions, limits, restarts, purge."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import shutil
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs import (
    TRANSITIONS,
    CancelRefusal,
    EnqueueLimits,
    InvalidTransition,
    Job,
    JobKind,
    JobNotFound,
    JobStatus,
    LimitExceeded,
    LimitKind,
    NewJob,
    OutputFile,
    can_transition,
    cancel_refusal,
    overall_position,
    round_robin,
)
from bot.store import (
    JobStore,
    Migration,
    SchemaTooNew,
    load_migrations,
    split_statements,
)
from cogs._errors import limit_text

GUILD_A, GUILD_B, GUILD_C = 1001, 1002, 1003


class FakeClock:
    """A clock the test moves by hand; every reading is unique unless `frozen`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.frozen = False

    def __call__(self) -> float:
        if not self.frozen:
            self.now += 0.001
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "jobs.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[JobStore]:
    opened = await JobStore.open(db_path, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, as another process (or an operator with the CLI) would have."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        yield conn
    finally:
        conn.close()


def new_job(
    guild: int = GUILD_A,
    user: int = 1,
    prompt: str = "a lighthouse",
    kind: JobKind = JobKind.IMAGINE,
    **kw: object,
) -> NewJob:
    return NewJob(guild_id=guild, channel_id=guild * 10, user_id=user, kind=kind, prompt=prompt, **kw)  # type: ignore[arg-type]


async def claim_all(store: JobStore, backend: str = "gpu0") -> list[Job]:
    claimed = []
    while (job := await store.claim_next(backend)) is not None:
        claimed.append(job)
    return claimed


def dispatch_counts_match(path: Path) -> bool:
    """The trigger-kept waiting counts equal the real number of queued jobs."""
    with raw(path) as conn:
        guilds = conn.execute(
            "SELECT g.guild_id, g.waiting, (SELECT COUNT(*) FROM jobs j WHERE j.status = 'queued' "
            "AND j.guild_id = g.guild_id) FROM dispatch_guilds g"
        ).fetchall()
        users = conn.execute(
            "SELECT u.waiting, (SELECT COUNT(*) FROM jobs j WHERE j.status = 'queued' "
            "AND j.guild_id = u.guild_id AND j.user_id = u.user_id) FROM dispatch_users u"
        ).fetchall()
    return all(row[1] == row[2] for row in guilds) and all(row[0] == row[1] for row in users)


# --------------------------------------------------------------------------------- migrations


async def test_new_database_is_created_with_parent_folders_wal_and_latest_schema(db_path: Path) -> None:
    async with await JobStore.open(db_path) as store:
        assert await store.schema_version() == len(load_migrations()) >= 1
    with raw(db_path) as conn:  # the file and its folders exist
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations())


async def test_reopening_a_current_database_keeps_jobs_and_version(db_path: Path) -> None:
    async with await JobStore.open(db_path) as store:
        job = await store.enqueue(new_job())
        version = await store.schema_version()
    async with await JobStore.open(db_path) as store:
        assert await store.schema_version() == version
        assert await store.get(job.id) == job


async def test_old_database_is_upgraded_in_place_keeping_its_jobs(db_path: Path) -> None:
    shipped = load_migrations()
    async with await JobStore.open(db_path, migrations=shipped) as store:
        job = await store.enqueue(new_job(prompt="kept across the upgrade"))
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


# ------------------------------------------------------------------------------------ fairness


async def test_claims_rotate_over_guilds_then_users_and_stay_fifo_per_user(store: JobStore) -> None:
    a = [await store.enqueue(new_job(GUILD_A, 1, f"a{i}")) for i in range(6)]
    b = await store.enqueue(new_job(GUILD_B, 2, "b0"))
    c1_first = await store.enqueue(new_job(GUILD_C, 3, "c1-first"))
    c2_only = await store.enqueue(new_job(GUILD_C, 4, "c2-only"))
    c1_second = await store.enqueue(new_job(GUILD_C, 3, "c1-second"))

    order = [job.id for job in await claim_all(store)]

    assert order == [
        a[0].id, b.id, c1_first.id,  # round 1: every guild once, in arrival order
        a[1].id, c2_only.id,  # round 2: guild C's other user gets a turn
        a[2].id, c1_second.id,
        a[3].id, a[4].id, a[5].id,  # only guild A is left
    ]  # fmt: skip


async def test_six_jobs_from_two_guilds_in_a_busy_queue_start_alternately_by_guild(
    store: JobStore,
) -> None:
    for i in range(3):  # guild A's three jobs all arrive before guild B's
        await store.enqueue(new_job(GUILD_A, 1, f"a{i}"))
    for i in range(3):
        await store.enqueue(new_job(GUILD_B, 2, f"b{i}"))

    guilds = [job.guild_id for job in await claim_all(store)]

    assert guilds == [GUILD_A, GUILD_B] * 3


async def test_prolific_user_cannot_starve_a_neighbour_in_the_same_guild(store: JobStore) -> None:
    for i in range(5):
        await store.enqueue(new_job(GUILD_A, 1, f"spam {i}"))
    late = await store.enqueue(new_job(GUILD_A, 2, "late but fair"))

    claimed = await claim_all(store)

    assert [job.user_id for job in claimed[:2]] == [1, 2]
    assert claimed[1].id == late.id
    assert [job.prompt for job in claimed if job.user_id == 1] == [f"spam {i}" for i in range(5)]


async def test_quiet_guild_is_served_next_when_it_returns_to_a_busy_queue(store: JobStore) -> None:
    for i in range(10):
        await store.enqueue(new_job(GUILD_A, 1 + i % 3, f"busy {i}"))
    for _ in range(4):
        assert (await store.claim_next("gpu0")).guild_id == GUILD_A  # type: ignore[union-attr]
    quiet = await store.enqueue(new_job(GUILD_B, 9, "one quiet job"))

    assert (await store.claim_next("gpu0")) == await store.get(quiet.id)


async def test_claim_only_takes_jobs_whose_model_the_backend_has(store: JobStore) -> None:
    sdxl = await store.enqueue(new_job(GUILD_A, 1, "sdxl job", model="sdxl"))
    flux = await store.enqueue(new_job(GUILD_B, 2, "flux job", model="flux"))
    anything = await store.enqueue(new_job(GUILD_C, 3, "no model"))
    later_flux = await store.enqueue(new_job(GUILD_A, 4, "second flux", model="flux"))

    assert (await store.claim_next("flux-box", models={"flux"})).id == later_flux.id  # type: ignore[union-attr]
    assert (await store.claim_next("flux-box", models={"flux"})).id == flux.id  # type: ignore[union-attr]
    assert (await store.claim_next("bare-box", models=set())).id == anything.id  # type: ignore[union-attr]
    assert await store.claim_next("flux-box", models={"flux"}) is None
    assert (await store.claim_next("any")).id == sdxl.id  # type: ignore[union-attr]


async def test_claim_persists_backend_and_prompt_id_before_returning(
    store: JobStore, db_path: Path, clock: FakeClock
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
    with raw(db_path) as conn:  # on disk, visible to another connection, before anything is posted
        assert conn.execute("SELECT status, prompt_id FROM jobs").fetchall() == [
            ("submitted", "c0ffee00-prompt")
        ]
    assert await store.get_by_prompt_id("c0ffee00-prompt") == claimed


async def test_claim_from_an_empty_queue_returns_none(store: JobStore) -> None:
    assert await store.claim_next("gpu0") is None
    assert await store.claim_next("gpu0", models={"sdxl"}) is None


async def test_requeued_job_is_its_users_next_job_again_with_one_more_attempt(store: JobStore) -> None:
    first = await store.enqueue(new_job(GUILD_A, 1, "first"))
    await store.enqueue(new_job(GUILD_A, 1, "second"))
    claimed = await store.claim_next("gpu0")
    assert claimed is not None
    await store.mark_running(claimed.id)

    requeued = await store.requeue(claimed.id, "backend gpu0 went away")

    assert requeued.status is JobStatus.QUEUED
    assert (requeued.attempts, requeued.error, requeued.backend, requeued.prompt_id) == (
        1,
        "backend gpu0 went away",
        None,
        None,
    )
    assert requeued.queued_at == first.queued_at
    assert await store.position_of(first.id) == 1
    assert (await store.claim_next("gpu1")).id == first.id  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------- positions


async def test_position_of_a_job_that_is_not_waiting_is_none(store: JobStore) -> None:
    job = await store.enqueue(new_job())
    assert await store.position_of(job.id) == 1
    await store.claim_next("gpu0")
    assert await store.position_of(job.id) is None
    assert await store.overall_position_of(job.id) is None
    assert await store.position_of(999_999) is None


def test_round_robin_interleaves_and_drops_empty_queues() -> None:
    assert round_robin([[1, 2, 3], [], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]
    assert round_robin([]) == []


def test_overall_position_counts_earlier_rounds_of_every_guild() -> None:
    # Guilds in service order hold 3, 1 and 2 jobs: A1 B1 C1 A2 C2 A3.
    assert [overall_position(p, 0, [3, 1, 2]) for p in (1, 2, 3)] == [1, 4, 6]
    assert overall_position(1, 1, [3, 1, 2]) == 2
    assert [overall_position(p, 2, [3, 1, 2]) for p in (1, 2)] == [3, 5]


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
    tmp_path: Path,
    before: list[tuple[int, int]],
    claims: int,
    requeues: int,
    after: list[tuple[int, int]],
    frozen_clock: bool,
) -> None:
    clock = FakeClock()
    clock.frozen = frozen_clock  # equal timestamps: FIFO falls back to the job id
    path = tmp_path / f"{time.monotonic_ns()}.db"
    async with await JobStore.open(path, clock=clock) as store:
        for guild, user in before:
            await store.enqueue(new_job(guild, user))
        taken = [job for _ in range(claims) if (job := await store.claim_next("gpu0"))]
        for job in taken[:requeues]:
            await store.requeue(job.id, "backend restarted")
        for guild, user in after:
            await store.enqueue(new_job(guild, user))

        waiting = await store.list_guild_jobs(0, [JobStatus.QUEUED], limit=1000)
        waiting += await store.list_guild_jobs(1, [JobStatus.QUEUED], limit=1000)
        waiting += await store.list_guild_jobs(2, [JobStatus.QUEUED], limit=1000)
        local = {guild: await store.positions(guild) for guild in (0, 1, 2)}
        overall = {job.id: await store.overall_position_of(job.id) for job in waiting}
        assert {job.id: await store.position_of(job.id) for job in waiting} == {
            job_id: place for places in local.values() for job_id, place in places.items()
        }
        assert dispatch_counts_match(path)

        claimed = await claim_all(store)

    assert [job.id for job in claimed] == sorted(overall, key=lambda job_id: overall[job_id])
    for guild, places in local.items():
        assert [job.id for job in claimed if job.guild_id == guild] == sorted(places, key=places.__getitem__)
    assert sorted(overall.values()) == list(range(1, len(waiting) + 1))


# --------------------------------------------------------------------------------- transitions

LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL_BY_METHOD = sorted(
    (a, b)
    for a in JobStatus
    for b in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
    if not can_transition(a, b) and not (a is b is JobStatus.RUNNING)  # mark_running is idempotent
)


async def drive_to(store: JobStore, status: JobStatus, **kw: object) -> Job:
    """Make one job and walk it to `status` through the public API.

    With a `model`, the claim is restricted to it, so other waiting jobs that have a different
    model stay where they are.
    """
    job = await store.enqueue(new_job(**kw))  # type: ignore[arg-type]
    if status is JobStatus.FAILED:
        return await store.fail(job.id, "bad prompt")
    if status is JobStatus.CANCELLED:
        await store.cancel(job.id)
        return await store.get(job.id)  # type: ignore[return-value]
    if status is JobStatus.QUEUED:
        return job
    claimed = await store.claim_next("gpu0", {job.model} if job.model else None)
    assert claimed is not None and claimed.id == job.id
    if status is JobStatus.SUBMITTED:
        return claimed
    running = await store.mark_running(job.id)
    if status is JobStatus.RUNNING:
        return running
    return await store.complete(job.id, [OutputFile(f"out/{job.id}.png", 64, 64, 10)])


async def apply(store: JobStore, job_id: int, target: JobStatus) -> None:
    if target is JobStatus.SUBMITTED:
        assert (await store.claim_next("gpu0")) is not None
    elif target is JobStatus.RUNNING:
        await store.mark_running(job_id)
    elif target is JobStatus.QUEUED:
        await store.requeue(job_id, "backend died")
    elif target is JobStatus.COMPLETED:
        await store.complete(job_id, [OutputFile("out/2.png", 64, 64, 10)])
    elif target is JobStatus.FAILED:
        await store.fail(job_id, "comfy said no")
    else:
        await store.cancel(job_id)


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=lambda s: s.value)
async def test_every_legal_transition_is_accepted(
    store: JobStore, source: JobStatus, target: JobStatus
) -> None:
    job = await drive_to(store, source)
    assert job.status is source

    await apply(store, job.id, target)

    after = await store.get(job.id)
    assert after is not None and after.status is target
    assert (after.finished_at is not None) is target.is_terminal


@pytest.mark.parametrize(("source", "target"), ILLEGAL_BY_METHOD, ids=lambda s: s.value)
async def test_illegal_transitions_are_rejected_and_change_nothing(
    store: JobStore, source: JobStatus, target: JobStatus
) -> None:
    job = await drive_to(store, source)
    before = await store.get(job.id)

    with pytest.raises(InvalidTransition) as caught:
        await apply(store, job.id, target)

    assert (caught.value.current, caught.value.target) == (source, target)
    assert await store.get(job.id) == before
    if target is JobStatus.COMPLETED and source is not JobStatus.COMPLETED:
        assert await store.outputs(job.id) == []


async def test_sql_trigger_enforces_the_same_state_machine_as_python(store: JobStore, db_path: Path) -> None:
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
    store: JobStore, db_path: Path
) -> None:
    job = await drive_to(store, JobStatus.COMPLETED)
    with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="illegal job status transition"):
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job.id,))
    with pytest.raises(InvalidTransition):
        await store.mark_running(job.id)


async def test_scheduler_losing_a_race_with_cancel_sees_the_current_status(store: JobStore) -> None:
    job = await drive_to(store, JobStatus.SUBMITTED)
    assert await store.cancel(job.id) is JobStatus.SUBMITTED  # tells the caller to interrupt ComfyUI

    with pytest.raises(InvalidTransition) as caught:
        await store.mark_running(job.id)
    assert caught.value.current is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition, match="cannot go from cancelled to cancelled"):
        await store.cancel(job.id)


async def test_mark_running_twice_is_harmless(store: JobStore, clock: FakeClock) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    clock.advance(5)
    again = await store.mark_running(job.id)
    assert again == job


async def test_unknown_job_ids_raise_job_not_found(store: JobStore) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.mark_running(404),
        lambda: store.cancel(404),
        lambda: store.fail(404, "x"),
        lambda: store.requeue(404, "x"),
        lambda: store.complete(404, []),
        lambda: store.set_prompt_id(404, "p"),
        lambda: store.set_status_message(404, 1, 2),
        lambda: store.set_result_message(404, 1, 2),
        lambda: store.enqueue(new_job(parent_job_id=404, parent_index=0)),
    ]
    for call in calls:
        with pytest.raises(JobNotFound, match="404"):
            await call()
    assert await store.get(404) is None


async def test_set_prompt_id_only_while_submitted(store: JobStore) -> None:
    job = await drive_to(store, JobStatus.SUBMITTED)
    assert (await store.set_prompt_id(job.id, "second-try")).prompt_id == "second-try"
    await store.mark_running(job.id)
    with pytest.raises(InvalidTransition):
        await store.set_prompt_id(job.id, "third")


async def test_complete_stores_outputs_with_the_status_change(store: JobStore) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    files = [OutputFile(f"out/{job.id}_{i}.png", 1024, 768, 1000 + i) for i in range(4)]

    done = await store.complete(job.id, files)

    assert (done.status, done.progress, done.finished_at is not None) == (JobStatus.COMPLETED, 1.0, True)
    outputs = await store.outputs(job.id)
    assert [(o.idx, o.path, o.width, o.height, o.bytes) for o in outputs] == [
        (i, f.path, f.width, f.height, f.bytes) for i, f in enumerate(files)
    ]
    assert await store.total_output_bytes() == sum(f.bytes for f in files)


async def test_progress_is_stored_in_coarse_steps_and_ignored_once_finished(store: JobStore) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    for step, expected in [(0.02, 0.0), (0.06, 0.06), (0.08, 0.06), (1.7, 1.0), (0.0, 0.0), (-3, 0.0)]:
        await store.update_progress(job.id, step)
        assert (await store.get(job.id)).progress == pytest.approx(expected)  # type: ignore[union-attr]
    await store.cancel(job.id)
    await store.update_progress(job.id, 0.5)
    assert (await store.get(job.id)).progress == 0.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="NaN"):
        await store.update_progress(job.id, float("nan"))


async def test_status_and_result_messages_are_remembered(store: JobStore) -> None:
    job = await store.enqueue(new_job(status_message_id=55))
    assert (job.status_channel_id, job.status_message_id) == (job.channel_id, 55)
    await store.set_status_message(job.id, 77, 88)
    await store.set_result_message(job.id, 77, 99)
    stored = await store.get(job.id)
    assert stored is not None
    assert (stored.status_channel_id, stored.status_message_id) == (77, 88)
    assert (stored.result_channel_id, stored.result_message_id) == (77, 99)


# -------------------------------------------------------------------------------------- limits


async def test_limit_messages_tell_the_member_what_is_allowed(store: JobStore, clock: FakeClock) -> None:
    active = EnqueueLimits(per_user_active=4)
    for _ in range(4):
        await store.enqueue(new_job(user=1), active)
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue(new_job(user=1), active)
    assert (
        limit_text(caught.value)
        == "You already have 4 jobs waiting or running; the limit is 4. Wait for one to finish."
    )
    assert (caught.value.kind, caught.value.allowed, caught.value.retry_after_s) == (
        LimitKind.PER_USER_ACTIVE,
        4,
        None,
    )
    assert (caught.value.current, caught.value.requested) == (4, 1)
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue_many([new_job(user=1)] * 2, EnqueueLimits(per_user_active=5))
    assert limit_text(caught.value) == (
        "You have 4 jobs waiting or running and this command adds 2; the limit is 5. "
        "Wait for one to finish, or ask for fewer."
    )

    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue_many([new_job(user=2)] * 5, EnqueueLimits(max_jobs_per_command=4))
    assert limit_text(caught.value) == "One command can make at most 4 jobs; this one asked for 5."
    assert (caught.value.kind, caught.value.allowed, caught.value.requested) == (
        LimitKind.MAX_JOBS_PER_COMMAND,
        4,
        5,
    )

    queue = EnqueueLimits(per_guild_queued=6)
    await store.enqueue(new_job(user=3), queue)
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue_many([new_job(user=3)] * 2, queue)
    assert limit_text(caught.value) == (
        "This server's queue has room for 1 more job and this command adds 2. "
        "Try again once some have started, or ask for fewer."
    )
    await store.enqueue(new_job(user=3), queue)
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue(new_job(user=5), queue)
    assert limit_text(caught.value) == (
        "This server's queue is full: 6 jobs waiting, the limit is 6. Try again once some have started."
    )
    assert (caught.value.kind, caught.value.current, caught.value.requested) == (
        LimitKind.PER_GUILD_QUEUED,
        6,
        1,
    )


async def test_per_minute_limit_counts_commands_and_says_when_to_retry(
    store: JobStore, clock: FakeClock
) -> None:
    rate = EnqueueLimits(per_user_per_minute=6)
    clock.frozen = True
    start = clock.now
    for i in range(6):
        clock.now = start + i
        await store.enqueue_many([new_job(guild=GUILD_A + i % 2, user=7)] * 2, rate)  # 2 jobs, 1 command
    assert await store.count_created_since(7, start - 1) == 6

    clock.now = start + 37
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue(new_job(user=7), rate)
    assert limit_text(caught.value) == "Slow down: at most 6 commands a minute. Try again in 23 s."
    assert caught.value.retry_after_s == pytest.approx(23.0)
    assert (caught.value.kind, caught.value.current) == (LimitKind.PER_USER_PER_MINUTE, 6)

    clock.now = start + 60.5  # the first command left the window
    await store.enqueue(new_job(user=7), rate)
    await store.enqueue(new_job(user=8), rate)  # other members are not affected


async def test_finished_jobs_free_room_under_the_active_cap(store: JobStore) -> None:
    limits = EnqueueLimits(per_user_active=2)
    first, _ = await store.enqueue_many([new_job(), new_job()], limits)
    assert await store.count_active_for_user(GUILD_A, 1) == 2
    await store.cancel(first.id)
    await store.enqueue(new_job(), limits)
    assert await store.count_active_for_user(GUILD_A, 1) == 2
    assert await store.count_active_for_user(GUILD_B, 1) == 0
    assert await store.count_queued_for_guild(GUILD_A) == 2


async def test_concurrent_commands_from_two_connections_cannot_exceed_a_cap(
    db_path: Path, clock: FakeClock
) -> None:
    limits = EnqueueLimits(per_user_active=4, per_guild_queued=6)
    async with (
        await JobStore.open(db_path, clock=clock) as one,
        await JobStore.open(db_path, clock=clock) as two,
    ):
        # 15 one-job commands from 3 members, racing through two connections: the guild cap of 6
        # must stop them all at exactly 6, and nobody may pass 4.
        attempts = [(one if i % 2 else two).enqueue(new_job(user=1 + i % 3), limits) for i in range(15)]
        results = await asyncio.gather(*attempts, return_exceptions=True)

        accepted = [r for r in results if isinstance(r, Job)]
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(accepted) + len(refused) == 15
        assert len(accepted) == 6 == await one.count_queued_for_guild(GUILD_A)
        assert {r.kind for r in refused} <= {LimitKind.PER_GUILD_QUEUED, LimitKind.PER_USER_ACTIVE}
        for user in (1, 2, 3):
            assert await two.count_active_for_user(GUILD_A, user) <= 4
        assert dispatch_counts_match(db_path)


async def test_enqueue_many_rejects_malformed_commands(store: JobStore) -> None:
    with pytest.raises(ValueError, match="one user"):
        await store.enqueue_many([new_job(user=1), new_job(user=2)], EnqueueLimits())
    with pytest.raises(ValueError):
        await store.enqueue(new_job(request_json="{not json"))
    with pytest.raises(ValueError):
        await store.enqueue(new_job(kind="sculpt"))  # type: ignore[arg-type]
    assert await store.enqueue_many([]) == []
    assert await store.count_queued_for_guild(GUILD_A) == 0


async def test_jobs_of_one_command_share_a_batch_and_children_point_at_parents(store: JobStore) -> None:
    parent = await store.enqueue(new_job(request_json='{"seed": 7}', model="sdxl"))
    batch = await store.enqueue_many(
        [
            NewJob(
                GUILD_A,
                10,
                1,
                JobKind.VARIATION,
                "p",
                parent_job_id=parent.id,
                parent_index=i,
                action="vary_strong",
            )
            for i in range(3)
        ]
    )
    assert parent.batch_id == parent.id and parent.request_json == '{"seed": 7}' and parent.model == "sdxl"
    assert [job.batch_id for job in batch] == [batch[0].id] * 3
    assert [(j.parent_job_id, j.parent_index, j.action, j.kind) for j in batch] == [
        (parent.id, i, "vary_strong", JobKind.VARIATION) for i in range(3)
    ]


# ------------------------------------------------------------------------------------- restarts


async def test_restart_after_a_crash_finds_in_flight_jobs_and_keeps_the_queue(
    db_path: Path, tmp_path: Path, clock: FakeClock
) -> None:
    store = await JobStore.open(db_path, clock=clock)
    try:
        jobs = [await store.enqueue(new_job(GUILD_A + i % 2, i)) for i in range(5)]
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
async def test_claim_queries_use_indexes_not_table_scans(store: JobStore, models: set[str] | None) -> None:
    plan = await store.explain_claim(models)
    assert any("idx_jobs_queued" in line for line in plan)
    assert any("idx_dispatch_guilds_next" in line for line in plan)
    assert not _plan_scans_table(plan), plan


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
    assert dispatch_counts_match(db_path)

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


# --------------------------------------------------------------------------------- lists, stats


async def test_cancellable_jobs_match_prompt_text_or_id_for_autocomplete(store: JobStore) -> None:
    cat = await store.enqueue(new_job(user=1, prompt="A Cat in 100% wool"))
    dog = await store.enqueue(new_job(user=2, prompt="a dog"))
    done = await store.enqueue(new_job(user=1, prompt="a cat, finished"))
    await store.cancel(done.id)
    await store.enqueue(new_job(GUILD_B, 1, prompt="a cat elsewhere"))

    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, "cat")] == [cat.id]
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, "100%")] == [cat.id]
    assert await store.cancellable_jobs(GUILD_A, None, "0_") == []
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, 2, "")] == [dog.id]
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, f"#{dog.id}")] == [dog.id]
    assert len(await store.cancellable_jobs(GUILD_A, None, "", limit=1)) == 1


async def test_job_lists_and_stats_per_guild_and_user(store: JobStore, clock: FakeClock) -> None:
    old = await store.enqueue(new_job(user=1))
    await store.fail(old.id, "bad")
    clock.advance(3600)
    since = clock.now
    done = await drive_to(store, JobStatus.COMPLETED, user=1)
    jobs = [await store.enqueue(new_job(user=1 + i % 2)) for i in range(4)]
    assert (await store.claim_next("gpu0")).id == jobs[1].id  # type: ignore[union-attr]  # user 2's turn
    await store.cancel(jobs[3].id)

    newest_first = await store.list_guild_jobs(GUILD_A)
    assert [j.id for j in newest_first] == sorted((j.id for j in [old, *jobs, done]), reverse=True)
    queued = await store.list_guild_jobs(GUILD_A, [JobStatus.QUEUED], limit=1, offset=1)
    assert [j.id for j in queued] == [jobs[0].id]
    assert [j.id for j in await store.list_user_jobs(2)] == [jobs[3].id, jobs[1].id]
    assert await store.list_user_jobs(2, guild_id=GUILD_B) == []
    stats = await store.stats(GUILD_A, since)
    assert (stats.completed, stats.failed, stats.cancelled, stats.waiting, stats.in_flight) == (1, 0, 1, 2, 1)


async def test_queue_snapshot_counts_active_jobs_by_status_and_queued_jobs_per_guild(store: JobStore) -> None:
    assert (await store.queue_snapshot()).by_status == {"queued": 0, "running": 0, "submitted": 0}
    jobs = {
        guild: [await store.enqueue(new_job(guild, user=i)) for i in range(n)]
        for guild, n in ((GUILD_A, 3), (GUILD_B, 2), (GUILD_C, 1))
    }
    first = await store.claim_next("gpu0")
    second = await store.claim_next("gpu0")
    assert first is not None and second is not None
    assert (first.guild_id, second.guild_id) == (GUILD_A, GUILD_B)  # round robin over guilds
    await store.mark_running(first.id)
    await store.cancel(jobs[GUILD_C][0].id)

    snapshot = await store.queue_snapshot()

    assert snapshot.queued_by_guild == {GUILD_A: 2, GUILD_B: 1}
    assert snapshot.by_status == {"queued": 3, "running": 1, "submitted": 1}


async def test_unshown_results_are_found_between_since_and_until(store: JobStore, clock: FakeClock) -> None:
    jobs = []
    for _ in range(3):
        await store.enqueue(new_job())
        job = await store.claim_next("gpu0")
        assert job is not None
        await store.set_status_message(job.id, 1, 100 + job.id)
        await store.complete(job.id, [])
        jobs.append(await store.get(job.id))
        clock.advance(60)
    finished = [j.finished_at for j in jobs if j is not None and j.finished_at is not None]
    await store.set_result_message(jobs[0].id, 1, 500)  # type: ignore[union-attr]

    found = await store.completed_without_result_message(finished[0], until=finished[2])
    assert [j.id for j in found] == [jobs[1].id]  # type: ignore[union-attr]
    assert [j.id for j in await store.completed_without_result_message(0)] == [j.id for j in jobs[1:]]  # type: ignore[union-attr]


async def test_user_settings_can_be_changed_one_at_a_time_and_cleared(
    store: JobStore, clock: FakeClock
) -> None:
    assert await store.get_user_settings(42) is None
    first = await store.update_user_settings(42, model="sdxl", aspect="16:9")
    second = await store.update_user_settings(42, aspect=None, negative="text, watermark")
    assert (second.model, second.aspect, second.style, second.negative) == (
        "sdxl",
        None,
        None,
        "text, watermark",
    )
    assert second.updated_at > first.updated_at
    assert await store.get_user_settings(42) == second
    assert await store.clear_user_settings(42) is True
    assert await store.clear_user_settings(42) is False
    assert await store.get_user_settings(42) is None


# ------------------------------------------------------------------------------------ retention


async def test_purge_deletes_old_finished_jobs_and_returns_their_files(
    store: JobStore, clock: FakeClock
) -> None:
    old = await drive_to(store, JobStatus.COMPLETED)
    old_parent = await drive_to(store, JobStatus.COMPLETED)
    child = await store.enqueue(new_job(parent_job_id=old_parent.id, parent_index=2, model="sdxl"))
    old_failed = await drive_to(store, JobStatus.FAILED)
    old_queued = await store.enqueue(new_job(model="sdxl"))
    clock.advance(86_400)
    cutoff = clock()
    recent = await drive_to(store, JobStatus.COMPLETED, model="tiny")
    bytes_before = await store.total_output_bytes()

    paths = await store.purge_finished_before(cutoff)

    assert paths == [f"out/{old.id}.png"]  # the parent's file stays for its waiting child
    assert await store.get(old.id) is None and await store.outputs(old.id) == []
    assert await store.get(old_failed.id) is None
    for kept in (old_parent, child, old_queued, recent):
        assert await store.get(kept.id) is not None
    assert await store.total_output_bytes() == bytes_before - 10

    await store.cancel(child.id)
    clock.advance(86_400)
    assert await store.purge_finished_before(clock()) == [f"out/{old_parent.id}.png", f"out/{recent.id}.png"]
    assert await store.get(old_parent.id) is None and await store.get(child.id) is None
    assert await store.get(old_queued.id) is not None
    assert await store.total_output_bytes() == 0


async def test_job_ids_are_never_reused_after_purging_the_newest(store: JobStore, clock: FakeClock) -> None:
    newest = await drive_to(store, JobStatus.FAILED)
    clock.advance(10)
    await store.purge_finished_before(clock())
    assert await store.get(newest.id) is None
    assert (await store.enqueue(new_job())).id > newest.id


async def test_children_of_a_purged_parent_keep_existing_without_it(
    store: JobStore, clock: FakeClock
) -> None:
    parent = await drive_to(store, JobStatus.COMPLETED)
    clock.advance(10)
    child = await store.enqueue(new_job(parent_job_id=parent.id, parent_index=0))
    await store.fail(child.id, "upscale failed")
    await store.purge_finished_before(clock.now - 5)
    assert await store.get(parent.id) is None
    assert (await store.get(child.id)).parent_job_id is None  # type: ignore[union-attr]


async def test_the_cancel_rule_owner_or_admin_same_guild_not_ended(store: JobStore) -> None:
    job = await store.enqueue(new_job(GUILD_A, user=1))
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=1, admin=False) is None
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=2, admin=True) is None
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=2, admin=False) is CancelRefusal.NOT_YOURS
    assert cancel_refusal(job, guild_id=GUILD_B, actor_id=1, admin=True) is CancelRefusal.MISSING
    assert cancel_refusal(None, guild_id=GUILD_A, actor_id=1, admin=True) is CancelRefusal.MISSING
    await store.cancel(job.id)
    ended = await store.get(job.id)
    assert cancel_refusal(ended, guild_id=GUILD_A, actor_id=1, admin=False) is CancelRefusal.ENDED
