"""Images in an S3-compatible bucket ([storage.s3]): results, follow-ups, attached images and retention,
through the real bot against the fake Discord and ComfyUI and a real S3 API (moto) on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.image_storage import S3Storage
from bot.jobs import JobStatus
from bot.retention import apply_retention
from tests.e2e import png, running_bot, status_message, wait_for_result
from tests.s3 import S3Server
from tests.test_e2e_buttons import press


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """An empty bucket; the bot finds the credentials in the standard AWS environment variables."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return S3Storage(
        s3_server.new_bucket(), prefix="bot", endpoint_url=s3_server.endpoint_url, env=s3_server.env
    )


def _s3_config(storage: S3Storage) -> str:
    return f'\n[storage.s3]\nbucket = "{storage.bucket}"\nprefix = "bot"\nendpoint_url = "{storage.endpoint_url}"\n'


def _local_images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data" / "outputs"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_results_and_follow_ups_live_in_the_bucket(tmp_path: Path, bucket: S3Storage) -> None:
    async with running_bot(tmp_path, config_extra=_s3_config(bucket)) as e2e:
        fake = e2e.discord
        status = await status_message(
            await fake.slash_command("imagine", {"prompt": "a lighthouse --seed 7"})
        )
        grid = await wait_for_result(e2e, status.id)
        (job,) = [j for j in await e2e.services.store.list_guild_jobs(fake.guild.id)]
        outputs = await e2e.services.store.outputs(job.id)
        assert [o.path for o in outputs] == [f"{job.id}_{i}.png" for i in range(4)]  # keys, not file paths
        keys = {o.key for o in await bucket.list()}
        assert {f"{job.id}_{i}.png" for i in range(4)} | {f"{job.id}_grid.png"} <= keys
        assert _local_images(tmp_path) == []  # nothing kept on the bot's disk
        assert grid.attachments  # the grid was read back from the bucket to be posted

        # U1 uploads the parent image, read from the bucket, to ComfyUI.
        _, upscaled, _ = await press(e2e, grid, f"ci:upscale_2x:{job.id}:1")
        assert upscaled is not None and upscaled.attachments
        child = await e2e.services.store.job_by_message(upscaled.id)
        assert child is not None and child.parent_job_id == job.id and child.status is JobStatus.COMPLETED
        uploaded = e2e.comfy[0].file(f"imagine_{job.id}_0.png", type="input")
        assert uploaded == await bucket.get(f"{job.id}_0.png")
        assert f"{child.id}_0.png" in {o.key for o in await bucket.list()}


async def test_an_attached_image_goes_to_the_bucket_and_retention_deletes_objects(
    tmp_path: Path, bucket: S3Storage
) -> None:
    async with running_bot(tmp_path, config_extra=_s3_config(bucket)) as e2e:
        fake = e2e.discord
        attachment = fake.upload("photo.png", png())
        handle = await fake.slash_command("imagine", {"prompt": "make it blue", "image": attachment})
        await handle.response()  # deferred while the bot downloads the attachment
        (status,) = await handle.wait_for_messages(1)
        await wait_for_result(e2e, status.id)
        prompts = await bucket.list("image_prompts/")
        assert len(prompts) == 1
        assert _local_images(tmp_path) == []

        services = e2e.services
        later = time.time() + 40 * 86400
        removed = await apply_retention(
            services.store, services.outputs, retention_days=30, max_total_mb=0, now=lambda: later
        )
        assert removed >= 5  # four images and the grid of the job, and the attached image it used
        assert await bucket.list() == []
