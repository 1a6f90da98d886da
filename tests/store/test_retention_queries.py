"""What retention asks of the store, on every engine: purging, sizes, unshown results, image prompts in use."""

from __future__ import annotations

from bot.jobs import ImagePrompt, JobKind, JobStatus
from bot.store import Store
from tests.store.helpers import FakeClock, drive_to, enqueue, new_job


async def test_purge_deletes_old_finished_jobs_and_returns_their_files(
    store: Store, clock: FakeClock
) -> None:
    old = await drive_to(store, JobStatus.COMPLETED)
    old_parent = await drive_to(store, JobStatus.COMPLETED)
    child = await enqueue(store, new_job(parent_job_id=old_parent.id, parent_index=2, model="sdxl"))
    old_failed = await drive_to(store, JobStatus.FAILED)
    old_queued = await enqueue(store, new_job(model="sdxl"))
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


async def test_job_ids_are_never_reused_after_purging_the_newest(store: Store, clock: FakeClock) -> None:
    newest = await drive_to(store, JobStatus.FAILED)
    clock.advance(10)
    await store.purge_finished_before(clock())
    assert await store.get(newest.id) is None
    assert (await enqueue(store, new_job())).id > newest.id


async def test_children_of_a_purged_parent_keep_existing_without_it(store: Store, clock: FakeClock) -> None:
    parent = await drive_to(store, JobStatus.COMPLETED)
    clock.advance(10)
    child = await enqueue(store, new_job(parent_job_id=parent.id, parent_index=0))
    await store.fail(child.id, "upscale failed")
    await store.purge_finished_before(clock.now - 5)
    assert await store.get(parent.id) is None
    assert (await store.get(child.id)).parent_job_id is None  # type: ignore[union-attr]


async def test_finished_output_bytes_sum_each_finished_job_oldest_first(
    store: Store, clock: FakeClock
) -> None:
    first = await drive_to(store, JobStatus.COMPLETED)
    clock.advance(60)
    await drive_to(store, JobStatus.RUNNING)  # not finished: not listed
    second = await drive_to(store, JobStatus.COMPLETED)
    await drive_to(store, JobStatus.FAILED)  # finished without outputs: not listed

    assert await store.finished_output_bytes() == [(first.finished_at, 10), (second.finished_at, 10)]


async def test_unshown_results_are_found_between_since_and_until(store: Store, clock: FakeClock) -> None:
    jobs = []
    for _ in range(3):
        await enqueue(store, new_job())
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


async def test_image_prompt_files_in_use_are_those_of_every_job_still_stored(
    store: Store, clock: FakeClock
) -> None:
    def image(name: str) -> ImagePrompt:
        return ImagePrompt(f"image_prompts/{name * 32}.png", 512, 512)

    assert await store.image_prompt_files_in_use() == set()
    waiting = await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image("a")))
    twice = [await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image("b"))) for _ in range(2)]
    await enqueue(store, new_job())  # no image prompt
    old = await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image("c")))
    await store.fail(old.id, "gone")
    clock.advance(60)

    assert await store.image_prompt_files_in_use() == {image(n).file for n in "abc"}
    await store.purge_finished_before(clock())
    assert await store.image_prompt_files_in_use() == {image(n).file for n in "ab"}
    await store.cancel(waiting.id)  # finished, but still in the database: still in use
    await store.cancel(twice[0].id)
    assert await store.image_prompt_files_in_use() == {image(n).file for n in "ab"}


async def test_every_image_of_a_blend_is_in_use_while_its_job_is_stored(
    store: Store, clock: FakeClock
) -> None:
    def image(name: str) -> ImagePrompt:
        return ImagePrompt(f"image_prompts/{name * 32}.png", 512, 512)

    blend = await enqueue(store, new_job(kind=JobKind.BLEND, blend_images=(image("a"), image("b"))))
    await enqueue(store, new_job(kind=JobKind.IMG2IMG, image_prompt=image("b")))
    again = await enqueue(store, new_job(kind=JobKind.REROLL, blend_images=(image("c"), image("a"))))
    assert await store.image_prompt_files_in_use() == {image(n).file for n in "abc"}
    await store.fail(blend.id, "gone")
    await store.fail(again.id, "gone")
    clock.advance(60)
    await store.purge_finished_before(clock())
    assert await store.image_prompt_files_in_use() == {image("b").file}
