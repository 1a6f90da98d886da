"""/blend through the real discord.py: 2 to 5 attached images mixed into a grid, its refusals and its buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.image_prompts import MAX_IMAGE_PROMPT_BYTES
from bot.jobs import JobKind, JobStatus
from comfy.params import request_from_json
from tests.e2e import E2E, GRID_IDS, ephemeral_text, guild_jobs, png, running_bot, wait_for_result
from tests.fakes.discord_models import CALLBACK_DEFERRED_CHANNEL_MESSAGE
from tests.test_e2e_buttons import job_of, press

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def loads(graph: dict[str, Any]) -> list[str]:
    return [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]


def resized(graph: dict[str, Any]) -> set[tuple[int, int]]:
    return {
        (n["inputs"]["width"], n["inputs"]["height"])
        for n in graph.values()
        if n["class_type"] == "ImageScale"
    }


async def blend(e2e: E2E, count: int, **options: Any) -> Any:
    """Run /blend with `count` small PNGs of different colours and sizes; return the command's handle."""
    fake = e2e.discord
    images = {f"image{i + 1}": fake.upload(f"in{i}.png", data) for i, data in enumerate(attached(count))}
    return await fake.slash_command("blend", images | options)


@pytest.mark.parametrize("count", [2, 5])
async def test_a_blend_of_2_or_5_images_is_a_grid_with_the_usual_buttons(tmp_path: Path, count: int) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        handle = await blend(e2e, count)
        defer = await handle.response()
        (status,) = await handle.wait_for_messages(1)
        (job,) = await guild_jobs(e2e)
        grid = await wait_for_result(e2e, status.id)
        graph = comfy.received_prompts[-1]
        uploaded = [comfy.file(f"imagine_prompt_{Path(i.file).name}", type="input") for i in job.blend_images]
        outputs = await e2e.services.store.outputs(job.id)

    assert defer.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
    assert job.kind is JobKind.BLEND and len(job.blend_images) == count
    names = [f"imagine_prompt_{Path(i.file).name}" for i in job.blend_images]
    assert loads(graph) == names + [names[0]] * (5 - count)  # unused slots repeat the first (factor 0)
    assert uploaded == attached(count)  # each image, as attached, uploaded to ComfyUI
    assert len(outputs) == 4 and grid.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert [a.filename for a in grid.attachments] == [f"imagine_{job.id}_grid.png"]
    assert f"--ar 1:1 --seed {request_from_json(job.request_json).seed}** - " in grid.content  # no text
    assert resized(graph) == {(64, 64)}  # square by default, the model's 64x64


def attached(count: int) -> list[bytes]:
    """The bytes of the images `blend` attaches, in order."""
    return [png(24 + 8 * i, 32, COLOURS[i]) for i in range(count)]


@pytest.mark.parametrize(("dimensions", "size"), [("2:3", (64, 96)), ("3:2", (96, 64)), ("1:1", (64, 64))])
async def test_the_dimensions_shape_the_images_at_the_models_pixel_area(
    tmp_path: Path, dimensions: str, size: tuple[int, int]
) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await blend(e2e, 3, dimensions=dimensions)
        await handle.response()
        (status,) = await handle.wait_for_messages(1)
        (job,) = await guild_jobs(e2e)
        await wait_for_result(e2e, status.id)
        graph = e2e.comfy[0].received_prompts[-1]
        outputs = await e2e.services.store.outputs(job.id)

    assert resized(graph) == {size}
    assert {(o.width, o.height) for o in outputs} == {size}
    request = request_from_json(job.request_json)
    assert f"--ar {dimensions} --seed {request.seed}" in status.content


async def test_a_blends_buttons_work_like_any_grid_and_its_reroll_blends_the_same_images(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        handle = await blend(e2e, 2, dimensions="3:2")
        await handle.response()
        (status,) = await handle.wait_for_messages(1)
        (job,) = await guild_jobs(e2e)
        grid = await wait_for_result(e2e, status.id)
        first = comfy.received_prompts[-1]
        told, rerolled, _ = await press(e2e, grid, f"ci:reroll:{job.id}")
        assert rerolled is not None
        reroll = await job_of(e2e, rerolled)
        again = comfy.received_prompts[-1]
        _, upscaled, _ = await press(e2e, grid, f"ci:upscale_2x:{job.id}:3")
        assert upscaled is not None
        upscale = await job_of(e2e, upscaled)

    assert told.startswith("Queued: Reroll")
    assert (reroll.kind, reroll.blend_images, reroll.status) == (
        JobKind.REROLL,
        job.blend_images,
        JobStatus.COMPLETED,
    )
    assert loads(again) == loads(first) and resized(again) == {(96, 64)}
    assert request_from_json(reroll.request_json).seed != request_from_json(job.request_json).seed
    assert (upscale.kind, upscale.parent_job_id, upscale.parent_index) == (JobKind.UPSCALE, job.id, 2)
    assert upscale.status is JobStatus.COMPLETED


async def test_a_blend_is_refused_for_a_text_file_a_too_large_file_or_a_single_image(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        image = fake.upload("ok.png", png())
        text_file = fake.upload("notes.txt", b"hello")
        big = fake.upload("big.png", png() + b"\0" * MAX_IMAGE_PROMPT_BYTES, content_type="image/png")
        told = []
        for options in (
            {"image1": image, "image2": text_file},
            {"image1": big, "image2": image},
            {"image1": image},
        ):
            handle = await fake.slash_command("blend", options)
            told.append(ephemeral_text(await handle.response()))
        jobs = await guild_jobs(e2e)
        saved = list((Path(e2e.config.storage.output_dir) / "image_prompts").glob("*"))

    assert told[0] == "`notes.txt` is not an image (text/plain); attach a PNG, JPEG or WebP."
    assert told[1] == "`big.png` is 10.0 MB; at most 10 MB are allowed."
    assert told[2] == (
        "/blend mixes 2 to 5 images; you attached 1. Attach each image in its own option (image1, image2, ...)."
    )
    assert jobs == [] and saved == []
