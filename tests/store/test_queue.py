"""The fair queue, on every engine: round robin over guilds then users, FIFO per user, positions."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs import JobStatus, round_robin
from bot.store import Store
from tests.store.helpers import GUILD_A, GUILD_B, GUILD_C, FakeClock, claim_all, enqueue, new_job
from tests.store_engines import StoreEngine

# ------------------------------------------------------------------------------------ fairness


async def test_claims_rotate_over_guilds_then_users_and_stay_fifo_per_user(store: Store) -> None:
    a = [await enqueue(store, new_job(GUILD_A, 1, f"a{i}")) for i in range(6)]
    b = await enqueue(store, new_job(GUILD_B, 2, "b0"))
    c1_first = await enqueue(store, new_job(GUILD_C, 3, "c1-first"))
    c2_only = await enqueue(store, new_job(GUILD_C, 4, "c2-only"))
    c1_second = await enqueue(store, new_job(GUILD_C, 3, "c1-second"))

    order = [job.id for job in await claim_all(store)]

    assert order == [
        a[0].id, b.id, c1_first.id,  # round 1: every guild once, in arrival order
        a[1].id, c2_only.id,  # round 2: guild C's other user gets a turn
        a[2].id, c1_second.id,
        a[3].id, a[4].id, a[5].id,  # only guild A is left
    ]  # fmt: skip


async def test_six_jobs_from_two_guilds_in_a_busy_queue_start_alternately_by_guild(
    store: Store,
) -> None:
    for i in range(3):  # guild A's three jobs all arrive before guild B's
        await enqueue(store, new_job(GUILD_A, 1, f"a{i}"))
    for i in range(3):
        await enqueue(store, new_job(GUILD_B, 2, f"b{i}"))

    guilds = [job.guild_id for job in await claim_all(store)]

    assert guilds == [GUILD_A, GUILD_B] * 3


async def test_prolific_user_cannot_starve_a_neighbour_in_the_same_guild(store: Store) -> None:
    for i in range(5):
        await enqueue(store, new_job(GUILD_A, 1, f"spam {i}"))
    late = await enqueue(store, new_job(GUILD_A, 2, "late but fair"))

    claimed = await claim_all(store)

    assert [job.user_id for job in claimed[:2]] == [1, 2]
    assert claimed[1].id == late.id
    assert [job.prompt for job in claimed if job.user_id == 1] == [f"spam {i}" for i in range(5)]


async def test_quiet_guild_is_served_next_when_it_returns_to_a_busy_queue(store: Store) -> None:
    for i in range(10):
        await enqueue(store, new_job(GUILD_A, 1 + i % 3, f"busy {i}"))
    for _ in range(4):
        assert (await store.claim_next("gpu0")).guild_id == GUILD_A  # type: ignore[union-attr]
    quiet = await enqueue(store, new_job(GUILD_B, 9, "one quiet job"))

    assert (await store.claim_next("gpu0")) == await store.get(quiet.id)


async def test_claim_only_takes_jobs_whose_model_the_backend_has(store: Store) -> None:
    sdxl = await enqueue(store, new_job(GUILD_A, 1, "sdxl job", model="sdxl"))
    flux = await enqueue(store, new_job(GUILD_B, 2, "flux job", model="flux"))
    anything = await enqueue(store, new_job(GUILD_C, 3, "no model"))
    later_flux = await enqueue(store, new_job(GUILD_A, 4, "second flux", model="flux"))

    assert (await store.claim_next("flux-box", models={"flux"})).id == later_flux.id  # type: ignore[union-attr]
    assert (await store.claim_next("flux-box", models={"flux"})).id == flux.id  # type: ignore[union-attr]
    assert (await store.claim_next("bare-box", models=set())).id == anything.id  # type: ignore[union-attr]
    assert await store.claim_next("flux-box", models={"flux"}) is None
    assert (await store.claim_next("any")).id == sdxl.id  # type: ignore[union-attr]


async def test_claim_persists_backend_and_prompt_id_before_returning(
    store: Store, store_engine: StoreEngine, location: str, clock: FakeClock
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
    # Committed, visible to another connection, before anything is posted.
    other = await store_engine.open(location, clock=clock)
    try:
        assert await other.get(job.id) == claimed
        assert [j.prompt_id for j in await other.list_in_flight()] == ["c0ffee00-prompt"]
    finally:
        await other.close()


async def test_claim_from_an_empty_queue_returns_none(store: Store) -> None:
    assert await store.claim_next("gpu0") is None
    assert await store.claim_next("gpu0", models={"sdxl"}) is None


async def test_requeued_job_is_its_users_next_job_again_with_one_more_attempt(store: Store) -> None:
    first = await enqueue(store, new_job(GUILD_A, 1, "first"))
    await enqueue(store, new_job(GUILD_A, 1, "second"))
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


async def test_position_of_a_job_that_is_not_waiting_is_none(store: Store) -> None:
    job = await enqueue(store, new_job())
    assert await store.position_of(job.id) == 1
    await store.claim_next("gpu0")
    assert await store.position_of(job.id) is None
    assert await store.position_of(999_999) is None


def test_round_robin_interleaves_and_drops_empty_queues() -> None:
    assert round_robin([[1, 2, 3], [], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]
    assert round_robin([]) == []


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
    store_engine: StoreEngine,
    tmp_path: Path,
    before: list[tuple[int, int]],
    claims: int,
    requeues: int,
    after: list[tuple[int, int]],
    frozen_clock: bool,
) -> None:
    clock = FakeClock()
    clock.frozen = frozen_clock  # equal timestamps: FIFO falls back to the job id
    location = store_engine.location(tmp_path)
    await store_engine.empty(location)  # each example starts from an empty database
    store = await store_engine.open(location, clock=clock)
    try:
        for guild, user in before:
            await enqueue(store, new_job(guild, user))
        taken = [job for _ in range(claims) if (job := await store.claim_next("gpu0"))]
        for job in taken[:requeues]:
            await store.requeue(job.id, "backend restarted")
        for guild, user in after:
            await enqueue(store, new_job(guild, user))

        waiting = await store.list_guild_jobs(0, [JobStatus.QUEUED], limit=1000)
        waiting += await store.list_guild_jobs(1, [JobStatus.QUEUED], limit=1000)
        waiting += await store.list_guild_jobs(2, [JobStatus.QUEUED], limit=1000)
        local = {guild: await store.positions(guild) for guild in (0, 1, 2)}
        assert {job.id: await store.position_of(job.id) for job in waiting} == {
            job_id: place for places in local.values() for job_id, place in places.items()
        }
        assert await store_engine.dispatch_counts_match(location)

        claimed = await claim_all(store)
    finally:
        await store.close()

    for guild, places in local.items():
        assert [job.id for job in claimed if job.guild_id == guild] == sorted(places, key=places.__getitem__)
    assert sorted(job.id for job in claimed) == sorted(job.id for job in waiting)


# ------------------------------------------------------------------------------------ snapshot


async def test_queue_snapshot_counts_active_jobs_by_status_and_queued_jobs_per_guild(store: Store) -> None:
    assert (await store.queue_snapshot()).by_status == {"queued": 0, "running": 0, "submitted": 0}
    jobs = {
        guild: [await enqueue(store, new_job(guild, user=i)) for i in range(n)]
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
    assert await store.count_queued_for_guild(GUILD_A) == 2
