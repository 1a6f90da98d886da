"""Drills: Discord fails around a job (429s, 5xx, deleted messages, dead tokens, upload limits, a bad disk).

Each drill runs the real bot (unmodified discord.py) against the fake Discord and ComfyUI and ends with
`settled` and `assert_nothing_lost`: every job ended, its result or its failure reason is shown, nothing
ran twice. discord.py retries a 429 after its `retry_after`; 500/502/504 (interaction callbacks: every
5xx) it tries 5 times, sleeping 1, 3, 5, 7 and 9 s; other 5xx raise at once. Drills that wait out the
long retries are marked `slow` (run them with `-m slow`).
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
from pathlib import Path

import pytest

from bot.jobs import Job, JobStatus
from tests.drills._checks import assert_nothing_lost, settled, told
from tests.e2e import (
    E2E,
    GRID_IDS,
    guild_jobs,
    running_bot,
    shown,
    status_message,
    wait_for_result,
)
from tests.fakes.discord_models import StoredMessage
from tests.fakes.discord_server import (
    CALLBACK_ROUTE,
    EDIT_ROUTE,
    FOLLOWUP_ROUTE,
    SEND_ROUTE,
)

# Bursts come from one member; the default limits (4 active jobs, 10 commands a minute) would refuse them.
GENEROUS_LIMITS = """
[limits]
per_user_active = 50
per_user_per_minute = 100
"""
# What a member must never read: Python exception names, errno texts, file paths.
TRACEBACK_LIKE = re.compile(r"Traceback|Errno|Error:|Exception|/tmp/|\.png\b|\.part\b")


def result_messages(e2e: E2E, job: Job) -> list[StoredMessage]:
    """The live messages that show the job's result: an image with buttons for exactly this job."""
    found = []
    for message in e2e.discord.messages_in(e2e.discord.world.channel(job.channel_id)):
        ids = [custom_id.split(":") for custom_id in message.custom_ids()]
        if message.attachments and any(len(p) > 2 and p[2] == str(job.id) and p[1] != "cancel" for p in ids):
            found.append(message)
    return found


def edits_of(e2e: E2E, message_id: int, *, since: int = 0) -> list[int]:
    """The statuses Discord answered to the bot's edits of one message."""
    return [
        c.status
        for c in e2e.discord.calls_to(EDIT_ROUTE, since=since)
        if c.params["message_id"] == str(message_id)
    ]


async def run_one(e2e: E2E, prompt: str) -> tuple[Job, StoredMessage]:
    """Run /imagine to the end; return the job and its result message."""
    status = await status_message(await e2e.discord.slash_command("imagine", {"prompt": prompt}))
    result = await wait_for_result(e2e, status.id)
    job = next(j for j in await guild_jobs(e2e) if j.status_message_id == status.id)
    await shown(e2e, job.id)
    return job, result


# ------------------------------------------------------------------------------------------ 429 bursts


async def test_a_burst_of_jobs_through_429s_on_edits_sends_and_a_global_limit_loses_no_result(
    tmp_path: Path,
) -> None:
    # The bot believes it may edit freely (its own budget is far above what this Discord allows), so it
    # runs into real 429s: the channel's edit limit without X-RateLimit headers, injected 429s on the
    # status messages the buttons post, on interaction answers and followups, and one global 429.
    async with running_bot(
        tmp_path, config_extra=GENEROUS_LIMITS, progress={"channel_edits_per_5s": 1000}
    ) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        parent, grid = await run_one(e2e, "a parent grid --seed 1")

        edit_limit = fake.rate_limit(EDIT_ROUTE, limit=3, per=0.25, send_headers=False)
        fake.fail_next(SEND_ROUTE, 429, count=3, retry_after=0.05)
        fake.fail_next(CALLBACK_ROUTE, 429, count=2, retry_after=0.05)
        fake.fail_next(FOLLOWUP_ROUTE, 429, count=2, retry_after=0.05)
        fake.fail_next(EDIT_ROUTE, 429, retry_after=0.1, is_global=True)
        since = fake.mark()
        comfy.pause()
        commands = [
            await fake.slash_command("imagine", {"prompt": f"burst {index} --seed {index}"})
            for index in range(4)
        ]
        commands.append(await fake.slash_command("imagine", {"prompt": "a {red, blue} burst --seed 9"}))
        presses = [await fake.click(grid, f"ci:upscale_2x:{parent.id}:{n}") for n in (1, 2)]
        for handle in commands + presses:
            assert (await handle.response()).ok
        comfy.resume()
        jobs = await settled(e2e, count=1 + 6 + 2)
        await assert_nothing_lost(e2e, jobs)
        later = fake.calls[since:]

    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * len(jobs)
    for job in jobs:
        (result,) = result_messages(e2e, job)
        # Posted anew and the status message deleted: no 429 left a second result or a stale status behind.
        assert result.id == job.result_message_id != job.status_message_id
        assert fake.message(job.status_message_id).deleted  # type: ignore[arg-type]
    limited = [c for c in later if c.status == 429]
    injected = [sum(1 for c in limited if c.route == r) for r in (SEND_ROUTE, CALLBACK_ROUTE, FOLLOWUP_ROUTE)]
    assert injected == [3, 2, 2]
    assert any(c.response_headers.get("X-RateLimit-Global") == "true" for c in limited)
    by_the_limit = [c for c in limited if c.response_headers.get("X-RateLimit-Bucket") == edit_limit.bucket]
    assert len(by_the_limit) >= 3, "the channel's edit limit never bit"
    assert [c for c in later if not c.ok and c.status != 429] == []


# ------------------------------------------------------------------------------------------------- 5xx


async def test_a_502_on_the_result_upload_is_retried_and_the_result_posted_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(SEND_ROUTE, 502, uploading=True)  # discord.py retries a 502 after 1 s
        job, result = await run_one(e2e, "a flaky gateway")
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [502, 200]
    assert result.id == jobs[0].result_message_id != job.status_message_id
    assert result_messages(e2e, jobs[0]) == [result]
    assert [c for c in fake.calls_to(EDIT_ROUTE) if c.files] == []  # never edited into the status message


@pytest.mark.slow
async def test_502s_outlasting_discord_py_retries_edit_the_result_into_the_status_message(
    tmp_path: Path,
) -> None:
    # discord.py tries the result upload 5 times, sleeping 1, 3, 5, 7 and 9 s after each 502, then gives up.
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(SEND_ROUTE, 502, count=5, uploading=True)
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a long outage"}))
        await fake.wait_for_call(lambda c: c.route == EDIT_ROUTE and bool(c.files) and c.ok, timeout=40)
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [502] * 5
    assert job.result_message_id == status.id and not fake.message(status.id).deleted
    assert edits_of(e2e, status.id)[-1] == 200
    assert result_messages(e2e, job) == [fake.message(status.id)]


async def test_503s_on_every_edit_of_the_status_message_still_post_the_result_mentioning_the_member(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "an unavailable edit"}))
        # Discord keeps answering 503 (which discord.py does not retry) for edits of this message from now on.
        fake.fail_next(f"PATCH /channels/*/messages/{status.id}", 503, count=1000)
        since = fake.mark()
        comfy.resume()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    (posted,) = fake.calls_to(SEND_ROUTE, since=since)
    assert job.result_message_id == int(posted.response["id"]) != status.id
    assert [int(u) for u in posted.payload["allowed_mentions"]["users"]] == [fake.user.id]
    new = fake.message(job.result_message_id)
    assert new.mentions == [fake.user]
    assert new.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert set(edits_of(e2e, status.id, since=since)) <= {503}
    assert fake.message(status.id).deleted  # the status message that could not be edited is gone too


async def test_a_result_discord_refused_everywhere_is_posted_when_the_bot_restarts(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a stormy outage"}))
        # Discord is down as the job ends: the edit and the new message are both refused.
        fake.fail_next(f"PATCH /channels/*/messages/{status.id}", 503, count=1000)
        fake.fail_next(SEND_ROUTE, 503)
        comfy.resume()
        (undelivered,) = await settled(e2e, count=1)
        assert undelivered.status is JobStatus.COMPLETED and undelivered.result_message_id is None

        fake.clear_faults()
        await e2e.restart()  # the images are on disk and the job knows its status message
        result = await wait_for_result(e2e, status.id)
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert jobs[0].result_message_id == result.id != status.id and fake.message(status.id).deleted
    assert result_messages(e2e, jobs[0]) == [result]
    assert len(e2e.comfy[0].executed_prompt_ids) == 1


async def test_a_result_discord_refused_everywhere_is_offered_again_without_a_restart(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        presenter = e2e.bot.get_cog("Imagine").presenter  # type: ignore[union-attr]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a long outage"}))
        fake.fail_next(f"PATCH /channels/*/messages/{status.id}", 503, count=1000)
        fake.fail_next(SEND_ROUTE, 503)
        comfy.resume()
        (undelivered,) = await settled(e2e, count=1)
        assert undelivered.result_message_id is None
        assert await presenter.retry_undelivered() == 0  # finished just now: not taken for undelivered yet

        fake.clear_faults()
        assert await presenter.catch_up(settled_s=0) == 1  # what the retry loop does a few minutes later
        result = await wait_for_result(e2e, status.id)
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)
        assert await presenter.catch_up(settled_s=0) == 0  # shown: never offered again

    assert jobs[0].result_message_id == result.id != status.id and fake.message(status.id).deleted
    assert result_messages(e2e, jobs[0]) == [result]
    assert len(e2e.comfy[0].executed_prompt_ids) == 1


async def test_a_job_that_can_be_shown_nowhere_is_cancelled_not_run_for_no_one(tmp_path: Path) -> None:
    # Slow sampler steps (0.25 s): the cancel comes within milliseconds, long before the job could finish.
    async with running_bot(tmp_path, step_time=0.25) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        fake.fail_next(CALLBACK_ROUTE, 404, code=10062, message="Unknown interaction")  # answered too late
        fake.set_channel_access(fake.channel, False)  # and the bot may not post in the channel
        await fake.slash_command("imagine", {"prompt": "a message in a bottle"})
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.CANCELLED and job.status_message_id is None
    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [403]  # it tried the channel
    assert comfy.executed_prompt_ids == [] or comfy.interrupt_requests == [job.prompt_id]


async def test_a_503_on_the_imagine_answer_past_the_deadline_still_shows_the_job_in_the_channel(
    tmp_path: Path,
) -> None:
    # The job is queued before the bot answers the interaction, so a failed answer must not strand it.
    # discord.py retries the 503 a second later; by then the 3 s to answer are over (10062), so the bot
    # posts the status message in the channel instead, and the result lands there.
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(CALLBACK_ROUTE, 503)
        since = fake.mark()
        handle = await fake.slash_command("imagine", {"prompt": "an unanswered command"})
        await fake.wait_for_call(lambda c: c.route == CALLBACK_ROUTE and c.status == 503, since=since)
        fake.advance_time(3)
        answer = await handle.response()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert (answer.status, answer.response["code"]) == (404, 10062)
    await _assert_shown_in_the_channel(e2e, jobs, "an unanswered command")


@pytest.mark.slow
async def test_503s_on_every_try_of_the_imagine_answer_still_show_the_job_in_the_channel(
    tmp_path: Path,
) -> None:
    # discord.py tries an interaction callback 5 times, sleeping 1, 3, 5, 7 and 9 s after each 503, then
    # gives up with DiscordServerError.
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(CALLBACK_ROUTE, 503, count=5)
        await fake.slash_command("imagine", {"prompt": "a command Discord never took"})
        await fake.wait_for_call(SEND_ROUTE, timeout=40)
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert [c.status for c in fake.calls_to(CALLBACK_ROUTE)] == [503] * 5
    await _assert_shown_in_the_channel(e2e, jobs, "a command Discord never took")


async def test_a_503_after_discord_took_the_imagine_answer_adopts_that_answer(tmp_path: Path) -> None:
    # Discord showed the answer but its edge answered 503; discord.py's retry is refused with 40060
    # (already acknowledged). The bot reads the answer back and follows the job there: no second
    # status message, none left behind saying "Queued" with a Cancel button.
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(CALLBACK_ROUTE, 503, after_handling=True)
        handle = await fake.slash_command("imagine", {"prompt": "a doubled answer"})
        answer = await handle.response()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert (answer.status, answer.response["code"]) == (400, 40060)
    original = handle.original()
    assert original is not None and job.status_message_id == original.id and original.deleted
    (posted,) = fake.calls_to(SEND_ROUTE)  # the result, and no second status message
    assert job.result_message_id == int(posted.response["id"])
    stale = [m for m in fake.messages_in() if m.custom_ids() == [f"ci:cancel:{job.id}"]]
    assert stale == [], [m.embeds for m in stale]
    assert result_messages(e2e, job) == [fake.message(job.result_message_id)]


async def _assert_shown_in_the_channel(e2e: E2E, jobs: list[Job], prompt: str) -> None:
    fake = e2e.discord
    (job,) = jobs
    status, posted = (c for c in fake.calls_to(SEND_ROUTE) if c.ok)
    assert job.status_message_id == int(status.response["id"]) and fake.message(job.status_message_id).deleted
    assert job.result_message_id == int(posted.response["id"])
    result = fake.message(job.result_message_id)
    assert result.mentions == [fake.user] and prompt in result.content
    assert result.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert result_messages(e2e, job) == [result]


# ------------------------------------------------------------------------------ the status message deleted


async def test_a_deleted_status_message_gets_the_result_as_a_new_message_mentioning_the_member(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        handle = await fake.slash_command("imagine", {"prompt": "a vanishing act"})
        status = await status_message(handle)
        await comfy.wait_paused()  # mid-run
        fake.message(status.id).deleted = True  # the member deleted it
        since = fake.mark()
        comfy.resume()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    (posted,) = fake.calls_to(SEND_ROUTE, since=since)
    assert [int(u) for u in posted.payload["allowed_mentions"]["users"]] == [fake.user.id]
    new = fake.message(int(posted.response["id"]))
    assert f"<@{fake.user.id}>" in new.content
    assert new.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert job.result_message_id == new.id and result_messages(e2e, job) == [new]
    assert fake.message(status.id).deleted
    # Once Discord said the message is gone (404), the bot stopped editing it.
    assert edits_of(e2e, status.id, since=since) in ([], [404])


# -------------------------------------------------------------------------- an expired interaction token


async def test_a_job_finishing_after_the_interaction_token_expired_still_lands(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        handle = await fake.slash_command("imagine", {"prompt": "a long queue"})
        status = await status_message(handle)
        await comfy.wait_paused()
        fake.advance_time(20 * 60)
        fake.expire_interaction(handle)
        since = fake.mark()
        comfy.resume()
        result = await wait_for_result(e2e, status.id)
        (parent,) = await settled(e2e, count=1)
        after_result = fake.mark()

        # Much later, after a restart, the buttons under the result still work.
        fake.advance_time(20 * 60)
        await e2e.restart()
        press = await fake.click(result, f"ci:upscale_2x:{parent.id}:3")
        assert (await press.response()).ok
        jobs = await settled(e2e, count=2)
        await assert_nothing_lost(e2e, jobs)

    later = fake.calls[since:after_result]
    assert [c for c in later if "/webhooks/" in c.path] == []
    assert all(c.ok for c in later if c.route == EDIT_ROUTE)
    assert parent.result_message_id == result.id != status.id
    upscale = next(j for j in jobs if j.id != parent.id)
    assert (upscale.parent_job_id, upscale.parent_index, upscale.status) == (
        parent.id,
        2,
        JobStatus.COMPLETED,
    )
    assert all(c.ok for c in fake.calls[after_result:])


# -------------------------------------------------------------------------------- uploads over the limit


async def test_an_oversized_grid_is_re_encoded_under_the_upload_limit(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.upload_limit = 300  # known to the bot from the interaction
        known = await status_message(await fake.slash_command("imagine", {"prompt": "a big picture"}))
        known_result = await wait_for_result(e2e, known.id)

        fake.upload_limit = None
        e2e.comfy[0].pause()
        unknown = await status_message(await fake.slash_command("imagine", {"prompt": "a bigger picture"}))
        fake.upload_limit = 300  # only Discord knows: the first upload is refused with 413
        e2e.comfy[0].resume()
        unknown_result = await wait_for_result(e2e, unknown.id)
        jobs = await settled(e2e, count=2)
        await assert_nothing_lost(e2e, jobs)
        kept = [o.path for job in jobs for o in await e2e.services.store.outputs(job.id)]

    for result in (known_result, unknown_result):
        (attachment,) = result.attachments
        assert attachment.filename.endswith((".webp", ".jpg")), attachment.filename
        assert attachment.size <= 300
    refused = [c for c in fake.calls_to(SEND_ROUTE) if c.status == 413]
    assert len(refused) == 1 and "a bigger picture" in refused[0].payload["content"]
    assert len(kept) == 8 and all(path.endswith(".png") for path in kept)  # only the upload shrank


async def test_an_image_that_cannot_fit_the_upload_limit_is_kept_the_member_told_and_posted_once_it_fits(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.upload_limit = 40  # no picture fits in 40 bytes
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a huge mural"}))
        (job,) = await settled(e2e, count=1)
        told_member = copy.deepcopy(fake.message(status.id))  # before the restart edits it again
        kept = [o.path for o in await e2e.services.store.outputs(job.id)]
        on_disk = await asyncio.to_thread(lambda: [path for path in kept if os.path.isfile(path)])
        presenter = e2e.bot.get_cog("Imagine").presenter  # type: ignore[union-attr]
        assert (
            await presenter.catch_up(settled_s=0) == 0
        )  # too large is lasting: not retried every few minutes

        # Completed but not shown: the next start tries again, and now the server allows more (boosted).
        fake.upload_limit = None
        since = fake.mark()
        await e2e.restart()
        result = await wait_for_result(e2e, status.id)
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert job.status is JobStatus.COMPLETED and job.result_message_id is None
    assert told(told_member, "❌ **Failed:** The picture was made but is too large to upload in this server.")
    assert told_member.components == [] and told_member.attachments == []  # no Cancel left on an ended job
    assert len(kept) == 4 and on_disk == kept  # kept: nothing silently lost
    # Known to be too large before any upload: told in place; posted once after the restart.
    assert (
        [c.status for c in fake.calls_to(SEND_ROUTE)]
        == [200]
        == [c.status for c in fake.calls_to(SEND_ROUTE, since=since)]
    )
    assert fake.calls_to(EDIT_ROUTE, since=since) == []
    assert jobs[0].result_message_id == result.id != status.id and fake.message(status.id).deleted
    assert len(e2e.comfy[0].executed_prompt_ids) == 1


# ------------------------------------------------------------------------------ the output folder unwritable


async def test_an_output_folder_that_cannot_be_created_fails_the_job_with_a_plain_reason(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        out = e2e.config.storage.output_dir
        assert not out.exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("a file where the output folder should be")  # chmod would not stop root
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a lost painting"}))
        (failed,) = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, [failed])
        shown_text = fake.message(status.id).embeds[0]["description"]

        out.unlink()  # the operator fixes the folder: the next job saves and lands
        await run_one(e2e, "a found painting")
        jobs = await settled(e2e, count=2)
        await assert_nothing_lost(e2e, jobs)

    assert failed.status is JobStatus.FAILED
    assert (
        shown_text
        == "❌ **Failed:** The image was made but the images could not be saved on the bot's server."
    )
    assert not TRACEBACK_LIKE.search(shown_text), shown_text
    assert fake.message(status.id).components == []  # no Cancel button left on an ended job
    assert len(e2e.comfy[0].executed_prompt_ids) == 2  # the failed one was not run again


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
async def test_a_full_disk_fails_the_job_saying_the_disk_is_full(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a painting too many"}))
        (job,) = await guild_jobs(e2e)
        out = e2e.config.storage.output_dir
        out.mkdir(parents=True, exist_ok=True)
        # The first file the job writes goes to /dev/full, which answers every write with ENOSPC.
        (out / f"{job.id}_0.png.part").symlink_to("/dev/full")
        comfy.resume()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)
        shown_text = fake.message(status.id).embeds[0]["description"]

    assert jobs[0].status is JobStatus.FAILED
    assert (
        shown_text
        == "❌ **Failed:** The image was made but the bot's disk is full, so the images could not be saved."
    )
    assert not TRACEBACK_LIKE.search(shown_text), shown_text
