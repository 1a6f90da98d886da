"""Enqueue limits on every engine: checked atomically with the insert, refused with the facts a member needs."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs import ACTIVE_STATUSES, EnqueueLimits, Job, JobKind, LimitExceeded, LimitKind, NewJob
from bot.store import Store
from cogs._errors import limit_text
from tests.store.helpers import GUILD_A, GUILD_B, FakeClock, enqueue, new_job
from tests.store_engines import StoreEngine


async def _active(store: Store, guild_id: int, user_id: int) -> int:
    return len(await store.list_user_jobs(user_id, guild_id, ACTIVE_STATUSES, limit=1000))


async def test_limit_messages_tell_the_member_what_is_allowed(store: Store, clock: FakeClock) -> None:
    active = EnqueueLimits(per_user_active=4)
    for _ in range(4):
        await enqueue(store, new_job(user=1), active)
    with pytest.raises(LimitExceeded) as caught:
        await enqueue(store, new_job(user=1), active)
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
    await enqueue(store, new_job(user=3), queue)
    with pytest.raises(LimitExceeded) as caught:
        await store.enqueue_many([new_job(user=3)] * 2, queue)
    assert limit_text(caught.value) == (
        "This server's queue has room for 1 more job and this command adds 2. "
        "Try again once some have started, or ask for fewer."
    )
    await enqueue(store, new_job(user=3), queue)
    with pytest.raises(LimitExceeded) as caught:
        await enqueue(store, new_job(user=5), queue)
    assert limit_text(caught.value) == (
        "This server's queue is full: 6 jobs waiting, the limit is 6. Try again once some have started."
    )
    assert (caught.value.kind, caught.value.current, caught.value.requested) == (
        LimitKind.PER_GUILD_QUEUED,
        6,
        1,
    )


async def test_per_minute_limit_counts_commands_and_says_when_to_retry(
    store: Store, clock: FakeClock
) -> None:
    rate = EnqueueLimits(per_user_per_minute=6)
    clock.frozen = True
    start = clock.now
    for i in range(6):
        clock.now = start + i
        await store.enqueue_many([new_job(guild=GUILD_A + i % 2, user=7)] * 2, rate)  # 2 jobs, 1 command

    clock.now = start + 37
    with pytest.raises(LimitExceeded) as caught:
        await enqueue(store, new_job(user=7), rate)
    assert limit_text(caught.value) == "Slow down: at most 6 commands a minute. Try again in 23 s."
    assert caught.value.retry_after_s == pytest.approx(23.0)
    assert (caught.value.kind, caught.value.current) == (LimitKind.PER_USER_PER_MINUTE, 6)

    clock.now = start + 60.5  # the first command left the window
    await enqueue(store, new_job(user=7), rate)
    await enqueue(store, new_job(user=8), rate)  # other members are not affected


async def test_finished_jobs_free_room_under_the_active_cap(store: Store) -> None:
    limits = EnqueueLimits(per_user_active=2)
    first, _ = await store.enqueue_many([new_job(), new_job()], limits)
    assert await _active(store, GUILD_A, 1) == 2
    await store.cancel(first.id)
    await enqueue(store, new_job(), limits)
    assert await _active(store, GUILD_A, 1) == 2
    assert await _active(store, GUILD_B, 1) == 0
    assert await store.count_queued_for_guild(GUILD_A) == 2


async def test_concurrent_commands_from_two_connections_cannot_exceed_a_cap(
    store_engine: StoreEngine, location: str, clock: FakeClock
) -> None:
    limits = EnqueueLimits(per_user_active=4, per_guild_queued=6)
    async with (
        await store_engine.open(location, clock=clock) as one,
        await store_engine.open(location, clock=clock) as two,
    ):
        # 15 one-job commands from 3 members, racing through two connections: the guild cap of 6
        # must stop them all at exactly 6, and nobody may pass 4.
        attempts = [enqueue(one if i % 2 else two, new_job(user=1 + i % 3), limits) for i in range(15)]
        results = await asyncio.gather(*attempts, return_exceptions=True)

        accepted = [r for r in results if isinstance(r, Job)]
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(accepted) + len(refused) == 15
        assert len(accepted) == 6 == await one.count_queued_for_guild(GUILD_A)
        assert {r.kind for r in refused} <= {LimitKind.PER_GUILD_QUEUED, LimitKind.PER_USER_ACTIVE}
        for user in (1, 2, 3):
            assert await _active(two, GUILD_A, user) <= 4
        assert await store_engine.dispatch_counts_match(location)


async def test_enqueue_many_rejects_malformed_commands(store: Store) -> None:
    with pytest.raises(ValueError, match="one user"):
        await store.enqueue_many([new_job(user=1), new_job(user=2)], EnqueueLimits())
    with pytest.raises(ValueError):
        await enqueue(store, new_job(request_json="{not json"))
    with pytest.raises(ValueError):
        await enqueue(store, new_job(kind="sculpt"))  # type: ignore[arg-type]
    assert await store.enqueue_many([]) == []
    assert await store.count_queued_for_guild(GUILD_A) == 0


async def test_jobs_of_one_command_share_a_batch_and_children_point_at_parents(store: Store) -> None:
    parent = await enqueue(store, new_job(request_json='{"seed": 7}', model="sdxl"))
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
