"""JobService: settings, banned words, channels, limits, follow-ups, cancel, info and image prompts, on real
services; each refusal is checked for its facts and for the words a member reads (cogs/_words/)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import Config, load_config
from bot.errors import MemberError, Reason
from bot.events import Cancelled, Completed, Failed, JobEvent
from bot.job_service import JobService
from bot.jobs import Job, JobKind, JobStatus, LimitExceeded, LimitKind
from bot.reasons import Failure, FailureKind
from bot.services import Services
from cogs._errors import member_text
from cogs._words.buttons import cancelled_text
from cogs._words.jobs import what_it_is
from cogs._words.refusals import Where, refusal_text
from cogs._words.results import job_info_text
from comfy.actions import ACTIONS, Action
from comfy.params import ParamError, request_from_json
from comfy.render import RenderError
from tests.e2e import write_e2e_config
from tests.fakes.comfy_server import FakeComfyUI

GUILD, OTHER_GUILD, CHANNEL, ALICE, BOB = 10, 20, 30, 40, 50


class Harness:
    """Started services against a fake ComfyUI, and the service under test."""

    def __init__(self, services: Services, comfy: FakeComfyUI) -> None:
        self.services = services
        self.comfy = comfy
        self.service = JobService(services, rng=random.Random(5))
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


Refusal = MemberError | ParamError | RenderError


async def refused(call: Awaitable[object], where: Where = Where.ANY) -> tuple[Refusal, str]:
    """The refusal `call` raises, and the words a member reads for it there."""
    with pytest.raises((MemberError, ParamError, RenderError)) as caught:
        await call
    return caught.value, refusal_text(caught.value, where)


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
    error, words = await refused(
        h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE, model=" sdxl ")
    )
    assert isinstance(error, MemberError) and error.reason is Reason.UNKNOWN_MODEL
    assert (error.value, error.choices) == ("sdxl", ("tiny", "other"))
    assert words == "Unknown model `sdxl`. Models you can use: `tiny`, `other`."


# ------------------------------------------------------------------------------------------ refusals


async def test_banned_words_are_whole_words_in_any_case(tmp_path: Path, comfy: FakeComfyUI) -> None:
    h = await start(configure(tmp_path, comfy.url, banned_words=["cat", "blood bath"]), comfy)
    try:
        for prompt, word in (("a CAT asleep", "cat"), ("a {dog, cat}", "cat"), ("a Blood  Bath", None)):
            if word is None:
                await h.service.prepare(prompt, guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
                continue
            error, words = await refused(
                h.service.prepare(prompt, guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
            )
            assert isinstance(error, MemberError) and (error.reason, error.value) == (
                Reason.BANNED_WORD,
                word,
            )
            assert words == (
                f"Your prompt contains `{word}`, a word this server does not allow. Remove it and try again."
            )
        await h.service.prepare(
            "concatenate cats --no cat", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
        )
        _, words = await refused(
            h.service.prepare("a blood bath", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
        )
        assert "`blood bath`" in words
    finally:
        await h.services.close()


async def test_channels_outside_the_allow_list_are_refused_with_the_allowed_ones(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    h = await start(configure(tmp_path, comfy.url, allowed_channel_ids=[111, 222]), comfy)
    try:
        error, words = await refused(
            h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
        )
        assert isinstance(error, MemberError) and error.channels == (111, 222)
        assert words == "Images can't be made in this channel. Use <#111>, <#222>."
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=222, user_id=ALICE)
        # A thread of an allowed channel is allowed.
        await h.service.prepare("a fox", guild_id=GUILD, channel_id=999, user_id=ALICE, parent_channel_id=111)
    finally:
        await h.services.close()


async def test_parameter_errors_reach_the_member_in_the_parsers_words(h: Harness) -> None:
    error, words = await refused(
        h.service.prepare("a fox --iw 2", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
    )
    assert isinstance(error, ParamError)
    assert re.search(r"`--iw` .* only works together with an image prompt", words)


async def test_saved_defaults_that_no_longer_fit_are_named_in_the_refusal(h: Harness) -> None:
    await h.services.store.update_user_settings(ALICE, aspect="9:1")
    error, words = await refused(
        h.service.prepare("a fox", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
    )
    assert isinstance(error, MemberError) and error.choices == ("--ar 9:1",)
    assert re.fullmatch(
        r"Your saved defaults \(`--ar 9:1`\) don't work with this prompt: .*aspect ratio may go.* "
        r"Change them with /settings, or give your own in the prompt\.",
        words,
    )


async def test_one_command_may_not_make_more_jobs_than_the_cap(h: Harness) -> None:
    error, words = await refused(
        h.service.prepare(
            "a {red, green, blue} fox --repeat 3", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
        )
    )
    assert isinstance(error, MemberError) and (error.count, error.allowed) == (9, 8)
    assert words == (
        "This prompt makes 9 jobs (permutations × `--repeat`); one command may make at most 8. "
        "Use fewer options or a smaller `--repeat`."
    )


async def test_limits_refuse_a_member_with_too_many_jobs(h: Harness) -> None:
    h.comfy.pause()
    await h.imagine("a {1, 2, 3, 4} fox")
    with pytest.raises(LimitExceeded) as refused_limit:
        await h.imagine("one more")
    assert (refused_limit.value.kind, refused_limit.value.allowed) == (LimitKind.PER_USER_ACTIVE, 4)
    assert member_text(refused_limit.value) == (
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


@pytest.mark.parametrize("action", [a for a in ACTIONS if a.from_image], ids=lambda a: a.name)
async def test_every_image_action_of_the_table_queues_a_job_of_its_kind(h: Harness, action: Action) -> None:
    parent = await h.completed("a fox --seed 99")
    (queued,) = await h.service.follow_up(
        parent.id, 1, action.name, guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    assert (queued.job.kind, queued.job.action) == (JobKind(action.template), action.name)
    assert (queued.job.parent_job_id, queued.job.parent_index) == (parent.id, 1)
    assert (request_from_json(queued.job.request_json).seed == 99) is action.keeps_seed
    assert isinstance(await h.finished(queued.job.id), Completed)


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

    async def follow_up(job_id: int, index: int, action: str, guild: int = GUILD) -> tuple[Refusal, str]:
        error, words = await refused(
            h.service.follow_up(job_id, index, action, guild_id=guild, **kwargs), Where.FOLLOW_UP
        )
        assert isinstance(error, MemberError)
        return error, words

    error, words = await follow_up(parent.id, 0, "upscale_2x", guild=OTHER_GUILD)
    assert (error.reason, words) == (Reason.JOB_ELSEWHERE, "That job belongs to another server.")
    error, words = await follow_up(parent.id, 4, "upscale_2x")
    assert (error.reason, error.number, error.count) == (Reason.NO_SUCH_IMAGE, 5, 4)
    assert words == f"Job #{parent.id} has no image 5; it has 4."
    error, words = await follow_up(9999, 0, "upscale_2x")
    assert (error.reason, error.job_id) == (Reason.JOB_MISSING, 9999)
    assert words == "That job no longer exists; its images were cleared from the bot's storage."
    error, words = await follow_up(parent.id, 0, "delete_everything")
    assert (error.reason, words) == (Reason.UNKNOWN_ACTION, "Unknown button action `delete_everything`.")
    h.comfy.pause()
    (waiting,) = await h.imagine("still running")
    error, words = await follow_up(waiting.id, 0, "vary_strong")
    assert error.reason is Reason.JOB_UNFINISHED
    assert re.fullmatch(
        rf"Job #{waiting.id} has not (started|finished), so there are no images to use yet\.", words
    )
    h.comfy.resume()
    image = (await h.services.store.outputs(parent.id))[0]
    await asyncio.to_thread(Path(image.path).unlink)
    error, words = await follow_up(parent.id, 0, "upscale_2x")
    assert error.reason is Reason.IMAGE_DELETED
    assert words == "That image was deleted from the bot's storage; it can no longer be used."


async def test_a_follow_up_counts_against_the_pressers_limits(h: Harness) -> None:
    parent = await h.completed()
    h.comfy.pause()
    await h.imagine("a {1, 2, 3, 4} bird", user=BOB)
    with pytest.raises(LimitExceeded) as refused_limit:
        await h.service.follow_up(parent.id, 0, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB)
    assert refused_limit.value.allowed == 4
    assert "already have 4 jobs" in (member_text(refused_limit.value) or "")
    h.comfy.resume()


async def test_job_info_lists_seed_parameters_model_backend_and_parent_link(h: Harness) -> None:
    parent = await h.completed("a fox --seed 5 --ar 3:2")
    await h.service.record_result_message(parent.id, CHANNEL, 777)
    (upscale,) = await h.service.follow_up(
        parent.id, 2, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    await h.finished(upscale.job.id)
    shown = await h.service.job_info(upscale.job.id, GUILD)
    assert (shown.job.id, shown.parent and shown.parent.id, shown.request.seed) == (
        upscale.job.id,
        parent.id,
        5,
    )
    info = job_info_text(shown)

    assert f"**Job #{upscale.job.id}** · Upscale (2x) · by <@{BOB}>" in info
    assert "**Parameters:** `a fox --ar 3:2 --seed 5`" in info
    assert "**Seed:** 5" in info and "**Model:** tiny" in info and "**Backend:** gpu0" in info
    assert (
        f"**Made from:** job #{parent.id} image 3 · https://discord.com/channels/{GUILD}/{CHANNEL}/777"
        in info
    )
    error, words = await refused(h.service.job_info(upscale.job.id, OTHER_GUILD), Where.INFO)
    assert isinstance(error, MemberError) and (error.reason, error.job_id) == (
        Reason.JOB_MISSING,
        upscale.job.id,
    )
    assert words == "That job does not exist in this server (it may have been deleted)."


async def test_cancel_is_for_the_owner_or_an_admin(h: Harness) -> None:
    h.comfy.pause()
    (job,) = await h.imagine()
    error, words = await refused(
        h.service.cancel(job.id, guild_id=GUILD, user_id=BOB, admin=False), Where.CANCEL_BUTTON
    )
    assert isinstance(error, MemberError) and (error.reason, error.owner_id) == (Reason.NOT_YOURS, ALICE)
    assert words == f"Only <@{ALICE}> or an admin can cancel job #{job.id}."
    error, words = await refused(
        h.service.cancel(job.id, guild_id=OTHER_GUILD, user_id=ALICE, admin=True), Where.CANCEL_BUTTON
    )
    assert isinstance(error, MemberError) and error.reason is Reason.JOB_MISSING
    assert words == "That job does not exist in this server."
    done = await h.service.cancel(job.id, guild_id=GUILD, user_id=BOB, admin=True)
    assert done.was_in_flight  # it was running: ComfyUI must stop it
    assert cancelled_text(done, where=Where.CANCEL_BUTTON, actor_id=BOB) == (
        f"Job #{job.id} is being stopped on the image server; its message will say when it is cancelled."
    )
    h.comfy.resume()
    assert isinstance(await h.finished(job.id), Cancelled)
    error, words = await refused(
        h.service.cancel(job.id, guild_id=GUILD, user_id=ALICE, admin=False), Where.CANCEL_BUTTON
    )
    assert isinstance(error, MemberError) and (error.reason, error.status) == (
        Reason.ALREADY_ENDED,
        JobStatus.CANCELLED,
    )
    assert words == f"Job #{job.id} has already been cancelled."
    h.comfy.pause()
    *_, third = await h.imagine("a {1, 2, 3} fox", user=BOB)
    done = await h.service.cancel(third.id, guild_id=GUILD, user_id=BOB, admin=False)
    assert (done.job.id, done.previous) == (third.id, JobStatus.QUEUED)
    assert cancelled_text(done, where=Where.CANCEL_BUTTON, actor_id=BOB) == f"Job #{third.id} is cancelled."
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
    error, words = await refused(h.service.save_image_prompt(b"GIF89a but not really"))
    assert isinstance(error, MemberError) and error.reason is Reason.IMAGE_UNREADABLE
    assert words == "The attachment is not an image I can read; attach a PNG, JPEG or WebP."
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")
    kept = await h.service.save_image_prompt(gif.getvalue())
    assert kept.file.endswith(".png")  # kept as PNG for ComfyUI's LoadImage


# ------------------------------------------------------------------------------------------ remix, zoom, blend


async def test_follow_ups_ask_for_the_prompt_only_with_remix_on_and_never_for_an_upscale(h: Harness) -> None:
    parent = await h.completed("a fox --ar 2:3 --seed 99")
    ask = h.service.follow_up_prompt
    assert await ask(parent.id, "vary_strong", guild_id=GUILD, user_id=BOB) is None
    await h.services.store.update_user_settings(BOB, remix=True)
    for action in ("vary_strong", "vary_subtle", "reroll", "zoom_2", "pan_left"):
        assert await ask(parent.id, action, guild_id=GUILD, user_id=BOB) == "a fox --ar 2:3 --seed 99"
    assert await ask(parent.id, "upscale_2x", guild_id=GUILD, user_id=BOB) is None
    # Custom Zoom asks everyone, with the zoom it offers.
    custom = await ask(parent.id, "zoom_custom", guild_id=GUILD, user_id=ALICE)
    assert custom == "a fox --ar 2:3 --seed 99 --zoom 2"
    error, _ = await refused(ask(parent.id + 100, "zoom_custom", guild_id=GUILD, user_id=ALICE))
    assert isinstance(error, MemberError) and error.reason is Reason.JOB_MISSING


async def test_a_remixed_follow_up_runs_the_edited_prompt_from_the_parent_image(h: Harness) -> None:
    await h.services.store.update_user_settings(BOB, negative="watermark")
    parent = await h.completed("a fox --seed 99")
    (vary,) = await h.service.follow_up(
        parent.id, 2, "vary_strong", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB,
        prompt="a wolf --seed 99 --stylize 250",
    )  # fmt: skip
    (kept,) = await h.service.follow_up(
        parent.id, 0, "pan_up", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB, prompt="a wolf --seed 7"
    )
    request, kept_request = request_from_json(vary.job.request_json), request_from_json(kept.job.request_json)

    assert (vary.job.kind, vary.job.parent_job_id, vary.job.parent_index) == (JobKind.VARIATION, parent.id, 2)
    assert (vary.job.prompt, request.text, request.stylize) == ("a wolf", "a wolf", 250)
    assert request.seed != 99  # the parent's seed, left as it was: the action draws a new one
    assert kept_request.seed == 7  # a seed the member changed is theirs
    assert "watermark" in request.no  # the presser's /settings apply, as in /imagine
    assert isinstance(await h.finished(vary.job.id), Completed)


async def test_a_remix_prompt_is_refused_like_imagine_and_zoom_only_in_custom_zoom(h: Harness) -> None:
    parent = await h.completed("a fox --seed 99")

    async def remix(action: str, prompt: str) -> str:
        call = h.service.follow_up(
            parent.id, 0, action, guild_id=GUILD, channel_id=CHANNEL, user_id=BOB, prompt=prompt
        )
        return (await refused(call))[1]

    assert "`--ar` must be two whole numbers" in await remix("vary_strong", "a wolf --ar wide")
    assert (
        await remix("reroll", "a wolf --zoom 2")
        == "`--zoom` only works in Custom Zoom, under an upscaled image."
    )
    assert "from 1 to 2" in await remix("zoom_custom", "a wolf --zoom 2.1")
    assert await h.services.store.list_guild_jobs(GUILD, statuses=[JobStatus.QUEUED]) == []


async def test_custom_zoom_zooms_by_the_prompts_factor_and_its_reroll_again(h: Harness) -> None:
    parent = await h.completed("a fox --seed 99")
    (upscale,) = await h.service.follow_up(
        parent.id, 0, "upscale_2x", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    await h.finished(upscale.job.id)
    (zoom,) = await h.service.follow_up(
        upscale.job.id, 0, "zoom_custom", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE,
        prompt="a fox by the sea --zoom 1.5 --seed 99",
    )  # fmt: skip
    assert isinstance(await h.finished(zoom.job.id), Completed)
    zoom_graph = h.comfy.received_prompts[-1]
    (again,) = await h.service.follow_up(
        zoom.job.id, 0, "reroll", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    (vary,) = await h.service.follow_up(
        zoom.job.id, 1, "vary_subtle", guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE
    )
    await h.services.store.update_user_settings(ALICE, remix=True)
    prefilled = await h.service.follow_up_prompt(zoom.job.id, "reroll", guild_id=GUILD, user_id=ALICE)

    pad = next(n for n in zoom_graph.values() if n["_meta"]["title"] == "Outpaint Pad")["inputs"]
    assert (pad["left"], pad["top"]) == (32, 32)  # 128 x 0.5 / 2 on each side
    assert (zoom.job.action, request_from_json(zoom.job.request_json).zoom) == ("zoom_custom", 1.5)
    assert (again.job.action, request_from_json(again.job.request_json).zoom) == ("zoom_custom", 1.5)
    assert request_from_json(vary.job.request_json).zoom is None
    assert prefilled is not None and prefilled.endswith("--zoom 1.5")
    assert what_it_is(zoom.job) == "Custom Zoom"


async def test_a_blend_mixes_its_images_and_its_reroll_the_same_images(h: Harness) -> None:
    images = [await h.service.save_image_prompt(png((40 * i, 10, 10), 40 + 8 * i)) for i in range(3)]
    job = await h.service.prepare_blend(3, (3, 2), guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
    (queued,) = await h.service.submit([h.service.with_blend_images(job, images)])
    assert isinstance(await h.finished(queued.job.id), Completed)
    blend_graph = h.comfy.received_prompts[-1]
    (again,) = await h.service.follow_up(
        queued.job.id, 0, "reroll", guild_id=GUILD, channel_id=CHANNEL, user_id=BOB
    )
    assert isinstance(await h.finished(again.job.id), Completed)
    outputs = await h.services.store.outputs(queued.job.id)

    request = request_from_json(queued.job.request_json)
    assert (queued.job.kind, queued.job.blend_images, request.text) == (JobKind.BLEND, tuple(images), "")
    assert what_it_is(queued.job) == "Blend of 3 images"
    assert (request.width, request.height, request.aspect) == (96, 64, (3, 2))  # as --ar 3:2: sides >= 64
    loads = [n["inputs"]["image"] for n in blend_graph.values() if n["class_type"] == "LoadImage"]
    names = [f"imagine_prompt_{Path(i.file).name}" for i in images]
    assert loads == [*names, names[0], names[0]]
    assert len(outputs) == 4 and {(o.width, o.height) for o in outputs} == {(96, 64)}
    assert (again.job.kind, again.job.blend_images) == (JobKind.REROLL, tuple(images))
    assert request_from_json(again.job.request_json).seed != request.seed
    again_loads = [
        n["inputs"]["image"] for n in h.comfy.received_prompts[-1].values() if n["class_type"] == "LoadImage"
    ]
    assert again_loads == loads
    assert await h.services.store.image_prompt_files_in_use() == {i.file for i in images}


async def test_a_blend_takes_two_to_five_images(h: Harness) -> None:
    for count in (0, 1, 6):
        error, words = await refused(
            h.service.prepare_blend(count, (1, 1), guild_id=GUILD, channel_id=CHANNEL, user_id=ALICE)
        )
        assert isinstance(error, MemberError) and (error.reason, error.count) == (
            Reason.BLEND_IMAGE_COUNT,
            count,
        )
        assert words.startswith(f"/blend mixes 2 to 5 images; you attached {count}.")
