"""ImagineService: settings, banned words, channels, limits, follow-ups and image prompts, on real services."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import Config, load_config
from bot.events import Cancelled, Completed, Failed, JobEvent
from bot.imagine_service import ImagineService, UserError
from bot.jobs import Job, JobKind, JobStatus, LimitExceeded
from bot.reasons import Failure, FailureKind
from bot.services import Services
from cogs._errors import member_text
from comfy.params import request_from_json
from tests.e2e import write_e2e_config
from tests.fakes.comfy_server import FakeComfyUI

GUILD, OTHER_GUILD, CHANNEL, ALICE, BOB = 10, 20, 30, 40, 50


class Harness:
    """Started services against a fake ComfyUI, and the service under test."""

    def __init__(self, services: Services, comfy: FakeComfyUI) -> None:
        self.services = services
        self.comfy = comfy
        self.service = ImagineService(services, rng=random.Random(5))
        self.events = services.bus.subscribe()

    async def imagine(self, prompt: str = "a fox", user: int = ALICE, **kwargs: Any) -> list[Job]:
        jobs = await self.service.prepare(prompt, guild_id=GUILD, channel_id=CHANNEL, user_id=user, **kwargs)
        return [q.job for q in await self.service.submit(jobs)]

    async def finished(self, job_id: int) -> JobEvent:
        async with asyncio.timeout(10):
            while True:
                event = await self.events.get()
                if event.job_id == job_id and isinstance(event, Completed | Failed | Cancelled):
                    return event

    async def completed(self, prompt: str = "a fox", user: int = ALICE) -> Job:
        (job,) = await self.imagine(prompt, user)
        assert isinstance(await self.finished(job.id), Completed)
        done = await self.services.store.get(job.id)
        assert done is not None
        return done


def configure(tmp_path: Path, url: str, **discord: Any) -> Config:
    config = load_config(write_e2e_config(tmp_path, "token", [url]), env={})
    return config.model_copy(update={"discord": config.discord.model_copy(update=discord)})


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(step_time=0.001) as fake:
        yield fake


async def start(config: Config, comfy: FakeComfyUI) -> Harness:
    services = Services(config)
    await services.start()
    return Harness(services, comfy)


@pytest.fixture
async def h(tmp_path: Path, comfy: FakeComfyUI) -> AsyncIterator[Harness]:
    harness = await start(configure(tmp_path, comfy.url), comfy)
    try:
        yield harness
    finally:
        await harness.services.close()


def png(colour: tuple[int, int, int] = (10, 200, 30), size: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------------------------------------ settings


async def test_saved_settings_apply_unless_the_prompt_says_otherwise(h: Harness) -> None:
    await h.services.store.update_user_settings(
        ALICE, model="other", aspect="16:9", style="cinematic", negative="watermark"
    )

    (plain,) = await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
    request = request_from_json(plain.request_json)
    assert (request.model, request.aspect, request.style) == ("other", (16, 9), "cinematic")
    assert request.positive == "cinematic still, a fox, film grain"
    assert request.negative.endswith("watermark") and "watermark" in request.no
    assert plain.model == "other" and plain.prompt == "a fox"

    (own,) = await h.service.prepare(
        "a fox —ar 1:1 --model tiny --no rain", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    request = request_from_json(own.request_json)
    assert (request.model, request.aspect) == ("tiny", (1, 1))
    assert request.no == ("rain", "watermark")

    (option,) = await h.service.prepare(
        "a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE, model="TINY"
    )
    assert request_from_json(option.request_json).model == "tiny"


async def test_a_member_without_settings_gets_the_server_defaults(h: Harness) -> None:
    (job,) = await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB)
    request = request_from_json(job.request_json)
    assert (request.model, request.aspect, request.style, request.negative) == ("tiny", None, None, "blurry")
    assert job.kind is JobKind.IMAGINE


async def test_an_unknown_model_option_lists_the_models(h: Harness) -> None:
    with pytest.raises(UserError, match=r"Unknown model `sdxl`\. Models you can use: `tiny`, `other`\."):
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE, model="sdxl")


# ------------------------------------------------------------------------------------------ refusals


async def test_banned_words_are_whole_words_in_any_case(tmp_path: Path, comfy: FakeComfyUI) -> None:
    h = await start(configure(tmp_path, comfy.url, banned_words=["cat", "blood bath"]), comfy)
    try:
        for prompt, word in (("a CAT asleep", "cat"), ("a {dog, cat}", "cat"), ("a Blood  Bath", None)):
            if word is None:
                await h.service.prepare(prompt, guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
                continue
            with pytest.raises(UserError, match=rf"contains `{word}`, a word this server does not allow"):
                await h.service.prepare(prompt, guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
        await h.service.prepare(
            "concatenate cats --no cat", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
        )
        with pytest.raises(UserError, match="`blood bath`"):
            await h.service.prepare("a blood bath", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
    finally:
        await h.services.close()


async def test_channels_outside_the_allow_list_are_refused_with_the_allowed_ones(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    h = await start(configure(tmp_path, comfy.url, allowed_channel_ids=[111, 222]), comfy)
    try:
        with pytest.raises(UserError, match=r"can't be made in this channel\. Use <#111>, <#222>\."):
            await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=222, user_id=ALICE)
        # A thread of an allowed channel is allowed.
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=999, user_id=ALICE, parent_channel_id=111)
    finally:
        await h.services.close()


async def test_parameter_errors_become_user_errors(h: Harness) -> None:
    with pytest.raises(UserError, match=r"`--iw` .* only works together with an image prompt"):
        await h.service.prepare("a fox --iw 2", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)


async def test_saved_defaults_that_no_longer_fit_are_named_in_the_refusal(h: Harness) -> None:
    await h.services.store.update_user_settings(ALICE, aspect="9:1")
    with pytest.raises(
        UserError, match=r"Your saved defaults \(`--ar 9:1`\) don't work .*aspect ratio may go"
    ):
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)


async def test_one_command_may_not_make_more_jobs_than_the_cap(h: Harness) -> None:
    with pytest.raises(UserError, match=r"makes 9 jobs .*at most 8"):
        await h.service.prepare(
            "a {red, green, blue} fox --repeat 3", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
        )


async def test_limits_refuse_a_member_with_too_many_jobs(h: Harness) -> None:
    h.comfy.pause()
    await h.imagine("a {1, 2, 3, 4} fox")
    with pytest.raises(LimitExceeded) as caught:
        await h.imagine("one more")
    assert member_text(caught.value) == (
        "You already have 4 jobs waiting or running; the limit is 4. Wait for one to finish."
    )
    h.comfy.resume()


# ----------------------------------------------------------------------------------------- follow-ups


async def test_follow_ups_keep_or_renew_the_seed_and_point_at_the_image(h: Harness) -> None:
    parent = await h.completed("a fox --seed 99")

    (upscale,) = await h.service.follow_up(
        parent.id, 1, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    (vary,) = await h.service.follow_up(
        parent.id, 3, "vary_subtle", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    (reroll,) = await h.service.follow_up(
        parent.id, 0, "reroll", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )

    assert (upscale.job.kind, upscale.job.parent_job_id, upscale.job.parent_index) == (
        JobKind.UPSCALE,
        parent.id,
        1,
    )
    assert request_from_json(upscale.job.request_json).seed == 99
    assert (vary.job.kind, vary.job.action, vary.job.parent_index) == (JobKind.VARIATION, "vary_subtle", 3)
    assert request_from_json(vary.job.request_json).seed != 99
    assert (reroll.job.kind, reroll.job.parent_job_id, reroll.job.action) == (JobKind.REROLL, None, None)
    assert request_from_json(reroll.job.request_json).seed != 99
    assert {upscale.job.user_id, vary.job.user_id, reroll.job.user_id} == {BOB}
    for item in (upscale, vary, reroll):
        assert isinstance(await h.finished(item.job.id), Completed)


async def test_a_reroll_of_a_variation_varies_the_same_image_again(h: Harness) -> None:
    parent = await h.completed()
    (vary,) = await h.service.follow_up(
        parent.id, 2, "vary_strong", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    await h.finished(vary.job.id)
    (again,) = await h.service.follow_up(
        vary.job.id, 0, "reroll", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    assert (again.job.action, again.job.parent_job_id, again.job.parent_index) == (
        "vary_strong",
        parent.id,
        2,
    )
    assert isinstance(await h.finished(again.job.id), Completed)


async def test_follow_ups_check_guild_state_and_image(h: Harness) -> None:
    parent = await h.completed()
    kwargs = {"channel_id": CHANNEL, "user_id": BOB}
    with pytest.raises(UserError, match="belongs to another server"):
        await h.service.follow_up(parent.id, 0, "upscale_2x", guild_id=OTHER_GUILD, **kwargs)
    with pytest.raises(UserError, match=f"Job #{parent.id} has no image 5; it has 4"):
        await h.service.follow_up(parent.id, 4, "upscale_2x", guild_id=GUILD, **kwargs)
    with pytest.raises(UserError, match="no longer exists"):
        await h.service.follow_up(9999, 0, "upscale_2x", guild_id=GUILD, **kwargs)
    with pytest.raises(UserError, match="Unknown button action"):
        await h.service.follow_up(parent.id, 0, "delete_everything", guild_id=GUILD, **kwargs)
    h.comfy.pause()
    (waiting,) = await h.imagine("still running")
    with pytest.raises(UserError, match=f"Job #{waiting.id} has not (started|finished)"):
        await h.service.follow_up(waiting.id, 0, "vary_strong", guild_id=GUILD, **kwargs)
    h.comfy.resume()
    image = (await h.services.store.outputs(parent.id))[0]
    await asyncio.to_thread(Path(image.path).unlink)
    with pytest.raises(UserError, match="deleted from the bot's storage"):
        await h.service.follow_up(parent.id, 0, "upscale_2x", guild_id=GUILD, **kwargs)


async def test_a_follow_up_counts_against_the_pressers_limits(h: Harness) -> None:
    parent = await h.completed()
    h.comfy.pause()
    await h.imagine("a {1, 2, 3, 4} bird", user=BOB)
    with pytest.raises(LimitExceeded) as caught:
        await h.service.follow_up(parent.id, 0, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB)
    assert "already have 4 jobs" in (member_text(caught.value) or "")
    h.comfy.resume()


async def test_job_info_lists_seed_parameters_model_backend_and_parent_link(h: Harness) -> None:
    parent = await h.completed("a fox --seed 5 --ar 3:2")
    await h.service.record_result_message(parent.id, CHANNEL, 777)
    (upscale,) = await h.service.follow_up(
        parent.id, 2, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    await h.finished(upscale.job.id)
    info = await h.service.job_info(upscale.job.id, GUILD)

    assert f"**Job #{upscale.job.id}** · Upscale (2x) · by <@{BOB}>" in info
    assert "**Parameters:** `a fox --ar 3:2 --seed 5`" in info
    assert "**Seed:** 5" in info and "**Model:** tiny" in info and "**Backend:** gpu0" in info
    assert (
        f"**Made from:** job #{parent.id} image 3 · https://discord.com/channels/{GUILD}/{CHANNEL}/777"
        in info
    )
    with pytest.raises(UserError, match="does not exist in this server"):
        await h.service.job_info(upscale.job.id, OTHER_GUILD)


async def test_cancel_is_for_the_owner_or_an_admin(h: Harness) -> None:
    h.comfy.pause()
    (job,) = await h.imagine()
    with pytest.raises(UserError, match=rf"Only <@{ALICE}> or an admin can cancel job #{job.id}\."):
        await h.service.cancel(job.id, guild_id=GUILD, user_id=BOB, is_admin=False)
    with pytest.raises(UserError, match="does not exist in this server"):
        await h.service.cancel(job.id, guild_id=OTHER_GUILD, user_id=ALICE, is_admin=True)
    told = await h.service.cancel(job.id, guild_id=GUILD, user_id=BOB, is_admin=True)
    assert told.startswith(f"Job #{job.id} is being stopped")  # it was running: ComfyUI must stop it
    h.comfy.resume()
    assert isinstance(await h.finished(job.id), Cancelled)
    again = await h.service.cancel(job.id, guild_id=GUILD, user_id=ALICE, is_admin=False)
    assert again == f"Job #{job.id} has already been cancelled."
    h.comfy.pause()
    *_, third = await h.imagine("a {1, 2, 3} fox", user=BOB)
    assert await h.service.cancel(third.id, guild_id=GUILD, user_id=BOB, is_admin=False) == (
        f"Job #{third.id} is cancelled."
    )
    h.comfy.resume()


# --------------------------------------------------------------------------------------- image prompts


async def test_the_same_image_attached_again_is_stored_once_and_counts_as_new_for_retention(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    config = configure(tmp_path, comfy.url)
    # Retention off: its first run at start would remove the file this test makes look old.
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"retention_days": 0})})
    h = await start(config, comfy)
    try:
        data = png((9, 9, 9))
        first = await h.service.save_image_prompt(data)
        path = h.services.outputs.root / first.file
        os.utime(path, (1_000_000, 1_000_000))  # attached long ago
        again = await h.service.save_image_prompt(data)
        mtime = path.stat().st_mtime
    finally:
        await h.services.close()
    assert again.file == first.file
    assert mtime > 1_000_000


async def test_an_image_prompt_is_uploaded_to_comfyui_and_runs_img2img(h: Harness) -> None:
    data = png()
    image = await h.service.save_image_prompt(data)
    jobs = await h.service.prepare(
        "make it blue", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE, has_image=True
    )
    (queued,) = await h.service.submit(h.service.with_image(jobs, image))
    assert isinstance(await h.finished(queued.job.id), Completed)
    (reroll,) = await h.service.follow_up(
        queued.job.id, 0, "reroll", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    assert isinstance(await h.finished(reroll.job.id), Completed)

    name = f"imagine_prompt_{hashlib.sha256(data).hexdigest()[:32]}.png"
    assert h.comfy.file(name, type="input") == data
    assert (h.services.outputs.root / image.file).read_bytes() == data
    assert (image.width, image.height) == (48, 48)
    assert queued.job.kind is JobKind.IMG2IMG
    first, second = h.comfy.received_prompts[-2:]
    for graph in (first, second):
        loads = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
        assert loads == [name]
    assert request_from_json(queued.job.request_json).denoise == 0.7


async def test_an_image_prompt_whose_file_is_gone_fails_with_a_reason(h: Harness) -> None:
    image = await h.service.save_image_prompt(png((1, 2, 3)))
    (h.services.outputs.root / image.file).unlink()
    jobs = await h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE, has_image=True)
    (queued,) = await h.service.submit(h.service.with_image(jobs, image))
    event = await h.finished(queued.job.id)
    assert isinstance(event, Failed) and event.failure == Failure(FailureKind.IMAGE_PROMPT_DELETED)
    job = await h.services.store.get(queued.job.id)
    assert job is not None and job.status is JobStatus.FAILED


async def test_attachments_that_are_not_images_are_refused(h: Harness) -> None:
    with pytest.raises(UserError, match="not an image I can read"):
        await h.service.save_image_prompt(b"GIF89a but not really")
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")
    kept = await h.service.save_image_prompt(gif.getvalue())
    assert kept.file.endswith(".png")  # kept as PNG for ComfyUI's LoadImage
