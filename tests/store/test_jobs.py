"""Job records on every engine: checked transitions, progress, outputs, message ids, lists and stats."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from bot.jobs import (
    TRANSITIONS,
    CancelRefusal,
    ImagePrompt,
    InvalidTransition,
    JobKind,
    JobNotFound,
    JobStatus,
    OutputFile,
    can_transition,
    cancel_refusal,
)
from bot.store import Store
from tests.store.helpers import GUILD_A, GUILD_B, FakeClock, drive_to, enqueue, new_job

# --------------------------------------------------------------------------------- transitions

LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL_BY_METHOD = sorted(
    (a, b)
    for a in JobStatus
    for b in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
    if not can_transition(a, b) and not (a is b is JobStatus.RUNNING)  # mark_running is idempotent
)


async def apply(store: Store, job_id: int, target: JobStatus) -> None:
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
async def test_every_legal_transition_is_accepted(store: Store, source: JobStatus, target: JobStatus) -> None:
    job = await drive_to(store, source)
    assert job.status is source

    await apply(store, job.id, target)

    after = await store.get(job.id)
    assert after is not None and after.status is target
    assert (after.finished_at is not None) is target.is_terminal


@pytest.mark.parametrize(("source", "target"), ILLEGAL_BY_METHOD, ids=lambda s: s.value)
async def test_illegal_transitions_are_rejected_and_change_nothing(
    store: Store, source: JobStatus, target: JobStatus
) -> None:
    job = await drive_to(store, source)
    before = await store.get(job.id)

    with pytest.raises(InvalidTransition) as caught:
        await apply(store, job.id, target)

    assert (caught.value.current, caught.value.target) == (source, target)
    assert await store.get(job.id) == before
    if target is JobStatus.COMPLETED and source is not JobStatus.COMPLETED:
        assert await store.outputs(job.id) == []


async def test_scheduler_losing_a_race_with_cancel_sees_the_current_status(store: Store) -> None:
    job = await drive_to(store, JobStatus.SUBMITTED)
    assert await store.cancel(job.id) is JobStatus.SUBMITTED  # tells the caller to interrupt ComfyUI

    with pytest.raises(InvalidTransition) as caught:
        await store.mark_running(job.id)
    assert caught.value.current is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition, match="cannot go from cancelled to cancelled"):
        await store.cancel(job.id)


async def test_mark_running_twice_is_harmless(store: Store, clock: FakeClock) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    clock.advance(5)
    again = await store.mark_running(job.id)
    assert again == job


async def test_unknown_job_ids_raise_job_not_found(store: Store) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.mark_running(404),
        lambda: store.cancel(404),
        lambda: store.fail(404, "x"),
        lambda: store.requeue(404, "x"),
        lambda: store.complete(404, []),
        lambda: store.set_status_message(404, 1, 2),
        lambda: store.set_result_message(404, 1, 2),
        lambda: enqueue(store, new_job(parent_job_id=404, parent_index=0)),
    ]
    for call in calls:
        with pytest.raises(JobNotFound, match="404"):
            await call()
    assert await store.get(404) is None


async def test_complete_stores_outputs_with_the_status_change(store: Store) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    files = [OutputFile(f"out/{job.id}_{i}.png", 1024, 768, 1000 + i) for i in range(4)]

    done = await store.complete(job.id, files)

    assert (done.status, done.progress, done.finished_at is not None) == (JobStatus.COMPLETED, 1.0, True)
    outputs = await store.outputs(job.id)
    assert [(o.idx, o.path, o.width, o.height, o.bytes) for o in outputs] == [
        (i, f.path, f.width, f.height, f.bytes) for i, f in enumerate(files)
    ]
    assert await store.total_output_bytes() == sum(f.bytes for f in files)


async def test_progress_is_stored_in_coarse_steps_and_ignored_once_finished(store: Store) -> None:
    job = await drive_to(store, JobStatus.RUNNING)
    for step, expected in [(0.02, 0.0), (0.06, 0.06), (0.08, 0.06), (1.7, 1.0), (0.0, 0.0), (-3, 0.0)]:
        await store.update_progress(job.id, step)
        assert (await store.get(job.id)).progress == pytest.approx(expected)  # type: ignore[union-attr]
    await store.cancel(job.id)
    await store.update_progress(job.id, 0.5)
    assert (await store.get(job.id)).progress == 0.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="NaN"):
        await store.update_progress(job.id, float("nan"))


async def test_status_and_result_messages_are_remembered(store: Store) -> None:
    job = await enqueue(store, new_job(status_message_id=55))
    assert (job.status_channel_id, job.status_message_id) == (job.channel_id, 55)
    await store.set_status_message(job.id, 77, 88)
    await store.set_result_message(job.id, 77, 99)
    stored = await store.get(job.id)
    assert stored is not None
    assert (stored.status_channel_id, stored.status_message_id) == (77, 88)
    assert (stored.result_channel_id, stored.result_message_id) == (77, 99)


async def test_an_image_prompt_is_stored_with_its_job_and_survives_every_change(store: Store) -> None:
    image = ImagePrompt("image_prompts/" + "b" * 32 + ".webp", 1024, 768)
    job = await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image, request_json='{"seed": 3}'))
    plain = await enqueue(store, new_job())

    assert (job.image_prompt, job.request_json) == (image, '{"seed": 3}')
    assert plain.image_prompt is None
    claimed = await store.claim_next("gpu0")
    assert claimed is not None and claimed.image_prompt == image
    await store.requeue(job.id, "backend went away")
    assert (await store.get(job.id)).image_prompt == image  # type: ignore[union-attr]


async def test_a_blends_images_are_stored_in_order_with_its_job_and_survive_every_change(
    store: Store,
) -> None:
    images = tuple(ImagePrompt(f"image_prompts/{c * 32}.png", 64 * (i + 1), 64) for i, c in enumerate("abc"))
    job = await enqueue(store, new_job(kind=JobKind.BLEND, prompt="", blend_images=images))
    plain = await enqueue(store, new_job())

    assert (job.kind, job.blend_images, job.image_prompt) == (JobKind.BLEND, images, None)
    assert plain.blend_images == ()
    claimed = await store.claim_next("gpu0")
    assert claimed is not None and claimed.blend_images == images
    await store.requeue(job.id, "backend went away")
    assert (await store.get(job.id)).blend_images == images  # type: ignore[union-attr]


# --------------------------------------------------------------------------------- lists, stats


async def test_cancellable_jobs_match_prompt_text_or_id_for_autocomplete(store: Store) -> None:
    cat = await enqueue(store, new_job(user=1, prompt="A Cat in 100% wool"))
    dog = await enqueue(store, new_job(user=2, prompt="a dog"))
    done = await enqueue(store, new_job(user=1, prompt="a cat, finished"))
    await store.cancel(done.id)
    await enqueue(store, new_job(GUILD_B, 1, prompt="a cat elsewhere"))

    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, "cat")] == [cat.id]
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, "100%")] == [cat.id]
    assert await store.cancellable_jobs(GUILD_A, None, "0_") == []
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, 2, "")] == [dog.id]
    assert [j.id for j in await store.cancellable_jobs(GUILD_A, None, f"#{dog.id}")] == [dog.id]
    assert len(await store.cancellable_jobs(GUILD_A, None, "", limit=1)) == 1


async def test_job_lists_and_stats_per_guild_and_user(store: Store, clock: FakeClock) -> None:
    old = await enqueue(store, new_job(user=1))
    await store.fail(old.id, "bad")
    clock.advance(3600)
    since = clock.now
    done = await drive_to(store, JobStatus.COMPLETED, user=1)
    jobs = [await enqueue(store, new_job(user=1 + i % 2)) for i in range(4)]
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


async def test_the_cancel_rule_owner_or_admin_same_guild_not_ended(store: Store) -> None:
    job = await enqueue(store, new_job(GUILD_A, user=1))
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=1, admin=False) is None
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=2, admin=True) is None
    assert cancel_refusal(job, guild_id=GUILD_A, actor_id=2, admin=False) is CancelRefusal.NOT_YOURS
    assert cancel_refusal(job, guild_id=GUILD_B, actor_id=1, admin=True) is CancelRefusal.MISSING
    assert cancel_refusal(None, guild_id=GUILD_A, actor_id=1, admin=True) is CancelRefusal.MISSING
    await store.cancel(job.id)
    ended = await store.get(job.id)
    assert cancel_refusal(ended, guild_id=GUILD_A, actor_id=1, admin=False) is CancelRefusal.ENDED
