"""Reactions on the bot's job messages through the real discord.py (raw events, no message cache): ✉️ sends
the result by DM, ❌ removes a result or cancels a job for its owner or an admin, anything else is ignored."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import discord
import pytest

from bot.jobs import Job, JobStatus
from cogs._reactions import ReactionOutcome, reaction_emoji
from tests.e2e import (
    E2E,
    guild_jobs,
    job_id_of,
    running_bot,
    status_message,
    wait_for_result,
)
from tests.fakes.discord_models import FakeUser, StoredMessage
from tests.fakes.discord_server import SEND_ROUTE

ENVELOPE = "✉️"
CROSS = "❌"


async def react(e2e: E2E, message: StoredMessage, emoji: str, user: FakeUser) -> ReactionOutcome:
    """`user` reacts; wait until the bot has handled the reaction and return what it did."""
    handled = asyncio.ensure_future(
        e2e.bot.wait_for(
            "imagine_reaction",
            check=lambda payload, _: payload.message_id == message.id and payload.user_id == user.id,
            timeout=10,
        )
    )
    try:
        await e2e.discord.react(message, emoji, user=user)
        _, outcome = await handled
    finally:
        handled.cancel()
    return ReactionOutcome(outcome)


async def finished_job(e2e: E2E, prompt: str) -> tuple[Job, StoredMessage]:
    """Run /imagine to the end; return the job and its result message."""
    status = await status_message(await e2e.discord.slash_command("imagine", {"prompt": prompt}))
    result = await wait_for_result(e2e, status.id)
    job = await e2e.services.store.get(job_id_of(result))
    assert job is not None
    return job, result


def member(e2e: E2E, name: str) -> FakeUser:
    """A new member of the test server without any role."""
    user = e2e.discord.add_user(name)
    e2e.discord.add_member(e2e.discord.guild, user)
    return user


# ------------------------------------------------------------------------------------------------------ ✉️


async def test_envelope_on_a_result_sends_the_images_prompt_seed_job_id_and_link_by_dm(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        carol = member(e2e, "carol")
        job, result = await finished_job(e2e, "a lighthouse at dusk --ar 3:2 --seed 7 --no people")
        mine = await react(e2e, result, ENVELOPE, fake.user)
        theirs = await react(e2e, result, ENVELOPE, carol)  # anyone may keep a copy for themselves

    assert (mine, theirs) == (ReactionOutcome.SENT, ReactionOutcome.SENT)
    (dm,) = fake.dm_messages(fake.user)
    assert [m.content for m in fake.dm_messages(carol)] == [dm.content]
    lines = dm.content.split("\n")
    assert lines[0] == f"**Job #{job.id}** · by <@{fake.user.id}>"
    assert lines[1] == "**Prompt:** `a lighthouse at dusk --ar 3:2 --no people --seed 7`"
    assert lines[2].startswith("**Seed:** 7 · **Model:** tiny · ") and "steps · cfg 7" in lines[2]
    assert lines[3] == "**Negative:** `blurry, people`"
    assert lines[4] == f"https://discord.com/channels/{fake.guild.id}/{fake.channel.id}/{result.id}"
    assert [a.filename for a in dm.attachments] == [f"imagine_{job.id}_{n}.png" for n in (1, 2, 3, 4)]
    assert dm.mentions == []
    assert not result.deleted


async def test_envelope_on_a_very_long_prompt_sends_it_whole_as_a_file(tmp_path: Path) -> None:
    words = " ".join(f"word{n}" for n in range(200))[:1480].strip()  # /imagine takes up to 1,500
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        job, result = await finished_job(e2e, f"{words} --seed 9")
        sent = await react(e2e, result, ENVELOPE, fake.user)

    assert sent is ReactionOutcome.SENT
    (dm,) = fake.dm_messages(fake.user)
    assert len(dm.content) <= 2000 and "…" in dm.content.split("\n")[1]
    prompt_file = next(a for a in dm.attachments if a.filename == f"imagine_{job.id}_prompt.txt")
    assert prompt_file.data.decode() == f"{words} --seed 9"


async def test_envelope_from_a_member_with_closed_dms_is_logged_and_breaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        _, result = await finished_job(e2e, "a private fox")
        fake.set_dms_open(fake.user, False)
        with caplog.at_level(logging.INFO, logger="cogs._reactions"):
            closed = await react(e2e, result, ENVELOPE, fake.user)
        after = await react(e2e, result, ENVELOPE, fake.admin)

    assert closed is ReactionOutcome.DMS_CLOSED
    assert fake.dm_messages(fake.user) == []
    assert any("DMs are closed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert after is ReactionOutcome.SENT and len(fake.dm_messages(fake.admin)) == 1


# ------------------------------------------------------------------------------------------------------ ❌


async def test_cross_on_a_result_removes_it_for_its_owner_or_an_admin_only(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        carol = member(e2e, "carol")
        owned, owned_result = await finished_job(e2e, "a fox to forget")
        other, other_result = await finished_job(e2e, "a fox to keep")
        by_carol = await react(e2e, owned_result, CROSS, carol)
        kept = fake.message(owned_result.id).deleted
        by_owner = await react(e2e, owned_result, CROSS, fake.user)
        by_admin = await react(e2e, other_result, CROSS, fake.admin)
        jobs = {job.id: job for job in await guild_jobs(e2e)}
        outputs = await e2e.services.store.outputs(owned.id)

    assert by_carol is ReactionOutcome.REFUSED and kept is False
    assert (by_owner, by_admin) == (ReactionOutcome.REMOVED, ReactionOutcome.REMOVED)
    assert owned_result.deleted and other_result.deleted
    # The jobs and their images stay (until retention); the result is just no longer shown.
    assert jobs[owned.id].status is JobStatus.COMPLETED and jobs[other.id].status is JobStatus.COMPLETED
    assert len(outputs) == 4


async def test_cross_on_a_status_message_cancels_a_waiting_job_for_its_owner_only(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        carol = member(e2e, "carol")
        comfy.pause()  # the backend holds two jobs (one running, one prefetched); the third waits
        handle = await fake.slash_command("imagine", {"prompt": "{first, second, third}"})
        *_, third = await handle.wait_for_messages(3)
        job_id = job_id_of(third)
        by_carol = await react(e2e, third, CROSS, carol)
        still = await e2e.services.store.get(job_id)
        by_owner = await react(e2e, third, CROSS, fake.user)
        await fake.wait_until(lambda: "Cancelled" in str(fake.message(third.id).embeds), timeout=10)
        job = await e2e.services.store.get(job_id)
        comfy.resume()

    assert by_carol is ReactionOutcome.REFUSED and still is not None and still.status is JobStatus.QUEUED
    assert by_owner is ReactionOutcome.CANCELLED
    assert job is not None and job.status is JobStatus.CANCELLED and job.backend is None
    assert fake.message(third.id).components == []  # the message says so, with no Cancel button left


async def test_cross_by_an_admin_on_a_running_job_interrupts_it_on_comfyui(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a runaway fox"}))
        await comfy.wait_paused()
        (running,) = await guild_jobs(e2e)
        outcome = await react(e2e, status, CROSS, fake.admin)
        comfy.resume()  # ComfyUI stops the running prompt; then the job ends as cancelled
        await fake.wait_until(lambda: "Cancelled" in str(fake.message(status.id).embeds), timeout=10)
        (job,) = await guild_jobs(e2e)

    assert outcome is ReactionOutcome.CANCELLED
    assert running.status is JobStatus.RUNNING and comfy.interrupt_requests == [running.prompt_id]
    assert job.status is JobStatus.CANCELLED and job.result_message_id is None
    assert not fake.message(status.id).deleted and fake.message(status.id).attachments == []


# ------------------------------------------------------------------------------------------ the rest


async def test_reactions_the_bot_does_not_handle_are_ignored_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        job, result = await finished_job(e2e, "an ignored fox")
        since = fake.mark()
        with caplog.at_level(logging.DEBUG, logger="cogs"):
            thumbs = await react(e2e, result, "👍", fake.user)
            custom = await react(e2e, result, "party:123456789012345678", fake.user)
            # The bot's own reaction comes back to it as an event too.
            own = asyncio.ensure_future(
                e2e.bot.wait_for(
                    "imagine_reaction", check=lambda p, _: p.user_id == fake.bot_user.id, timeout=10
                )
            )
            message = e2e.bot.get_partial_messageable(result.channel_id).get_partial_message(result.id)
            await message.add_reaction(CROSS)
            _, own_outcome = await own
        calls = [c.route for c in fake.calls[since:]]
        fresh = await e2e.services.store.get(job.id)

    assert (thumbs, custom, own_outcome) == (ReactionOutcome.IGNORED,) * 3
    assert not result.deleted and fresh is not None and fresh.result_message_id == result.id
    assert SEND_ROUTE not in calls and len(calls) == 1  # only the bot's own reaction
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_envelope_on_a_status_message_and_reactions_on_unknown_messages_do_nothing(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "an unfinished fox"}))
        on_status = await react(e2e, status, ENVELOPE, fake.user)
        stranger = await e2e.bot.get_partial_messageable(fake.channel.id).send("not a job")
        on_stranger = await react(e2e, fake.message(stranger.id), CROSS, fake.admin)
        comfy.resume()
        (job,) = await guild_jobs(e2e)

    assert (on_status, on_stranger) == (ReactionOutcome.IGNORED, ReactionOutcome.IGNORED)
    assert fake.dm_messages(fake.user) == [] and not fake.message(stranger.id).deleted
    assert job.status is not JobStatus.CANCELLED


async def test_reactions_and_buttons_work_on_messages_from_before_a_restart(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        job, result = await finished_job(e2e, "a fox that outlives the bot --seed 3")
        comfy.pause()
        waiting = await status_message(await fake.slash_command("imagine", {"prompt": "a patient fox"}))
        await e2e.restart()  # nothing about either message is in memory now

        sent = await react(e2e, result, ENVELOPE, fake.user)
        since = fake.mark()
        press = await fake.click(result, f"ci:upscale_2x:{job.id}:1")
        assert (await press.response()).ok
        await press.wait_for_messages(1)  # "Queued: ...", told once its status message is posted
        cancelled = await react(e2e, waiting, CROSS, fake.user)
        comfy.resume()  # ComfyUI stops the running prompt; then the job ends as cancelled
        await fake.wait_until(lambda: "Cancelled" in str(fake.message(waiting.id).embeds), timeout=10)
        upscale_status = fake.message(int(fake.calls_to(SEND_ROUTE, since=since)[0].response["id"]))
        upscaled = await wait_for_result(e2e, upscale_status.id)
        removed = await react(e2e, result, CROSS, fake.user)

    assert sent is ReactionOutcome.SENT
    (dm,) = fake.dm_messages(fake.user)
    assert "--seed 3" in dm.content and str(result.id) in dm.content
    assert cancelled is ReactionOutcome.CANCELLED
    assert upscaled.content.endswith(f"Image #1 <@{fake.user.id}>")
    assert removed is ReactionOutcome.REMOVED and result.deleted and not upscaled.deleted


async def test_the_bot_asks_for_reactions_and_no_privileged_intent(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        intents = e2e.bot.intents

    assert intents.guild_reactions
    assert not (intents.members or intents.presences or intents.message_content)


@pytest.mark.parametrize(
    ("emoji", "handled"),
    [("✉️", "\u2709"), ("✉", "\u2709"), ("❌", "\u274c"), ("👍", None), ("<:x_mark:123456789>", None)],
)
def test_the_envelope_is_read_with_or_without_its_variation_selector(emoji: str, handled: str | None) -> None:
    assert reaction_emoji(discord.PartialEmoji.from_str(emoji)) == handled
