"""Retention removes old and over-cap images with their jobs, and keeps what is still needed."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from bot.jobs import ImagePrompt, JobKind, JobStatus, NewJob, OutputFile
from bot.outputs import OutputStore
from bot.retention import apply_retention
from bot.scheduler import IMAGE_PROMPT_DIR
from bot.store import Store
from tests.store_engines import StoreEngine

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


async def _finished_job(store: Store, outputs: OutputStore, size: int = 0) -> int:
    (job,) = await store.enqueue_many(
        [NewJob(guild_id=1, channel_id=1, user_id=1, kind=JobKind.IMAGINE, prompt="p", model="m")]
    )
    claimed = await store.claim_next("gpu0")
    assert claimed is not None and claimed.id == job.id
    saved = await outputs.save(job.id, [_png()] * 4)
    files = [OutputFile(str(i.path), i.width, i.height, size or i.size) for i in saved.images]
    await store.complete(job.id, files)
    return job.id


async def test_jobs_older_than_the_retention_lose_their_rows_and_files(
    store_engine: StoreEngine, tmp_path: Path
) -> None:
    clock = Clock()
    store = await store_engine.open(store_engine.location(tmp_path), clock=clock)
    outputs = OutputStore(tmp_path / "out")
    try:
        old = await _finished_job(store, outputs)
        clock.now += 10 * DAY
        new = await _finished_job(store, outputs)
        removed = await apply_retention(store, outputs, retention_days=5, max_total_mb=0, now=clock)
        assert removed == 5  # four images and the grid
        assert await store.get(old) is None
        assert not (tmp_path / "out" / f"{old}_grid.png").exists()
        new_job = await store.get(new)
        assert new_job is not None and new_job.status is JobStatus.COMPLETED
        assert (tmp_path / "out" / f"{new}_0.png").exists()
    finally:
        await store.close()


async def test_the_oldest_jobs_go_first_when_over_the_size_cap(
    store_engine: StoreEngine, tmp_path: Path
) -> None:
    clock = Clock()
    store = await store_engine.open(store_engine.location(tmp_path), clock=clock)
    outputs = OutputStore(tmp_path / "out")
    mb = 1024 * 1024
    try:
        ids = []
        for _ in range(3):
            ids.append(await _finished_job(store, outputs, size=mb // 4))  # 1 MB per job
            clock.now += 60
        await apply_retention(store, outputs, retention_days=0, max_total_mb=2, now=clock)
        assert await store.get(ids[0]) is None
        assert await store.get(ids[1]) is not None and await store.get(ids[2]) is not None
        assert await store.total_output_bytes() <= 2 * mb
    finally:
        await store.close()


async def test_attached_images_go_when_old_and_no_job_uses_them(
    store_engine: StoreEngine, tmp_path: Path
) -> None:
    clock = Clock()
    store = await store_engine.open(store_engine.location(tmp_path), clock=clock)
    outputs = OutputStore(tmp_path / "out")
    folder = tmp_path / "out" / IMAGE_PROMPT_DIR
    folder.mkdir(parents=True)
    old_unused, old_used, fresh = (folder / f"{name}.png" for name in ("a" * 32, "b" * 32, "c" * 32))
    for path in (old_unused, old_used, fresh):
        path.write_bytes(_png())
    for path in (old_unused, old_used):
        os.utime(path, (clock.now - 10 * DAY, clock.now - 10 * DAY))
    os.utime(fresh, (clock.now - DAY, clock.now - DAY))  # attached yesterday: maybe not queued yet
    image = ImagePrompt(f"{IMAGE_PROMPT_DIR}/{old_used.name}", 64, 64)
    await store.enqueue_many(
        [NewJob(guild_id=1, channel_id=1, user_id=1, kind=JobKind.IMG2IMG, prompt="x", image_prompt=image)]
    )
    try:
        removed = await apply_retention(store, outputs, retention_days=5, max_total_mb=0, now=clock)
        kept = sorted(p.name for p in folder.iterdir())
    finally:
        await store.close()

    assert removed == 1
    assert kept == sorted([old_used.name, fresh.name])
