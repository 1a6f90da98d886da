"""The finished image is a new message that notifies its owner, through the real discord.py: the mention and
whom it may notify, the ping setting, the status message deleted, and every way Discord can refuse a step."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.jobs import JobStatus
from tests.e2e import (
    GRID_IDS,
    guild_jobs,
    result_of,
    running_bot,
    shown,
    status_message,
    wait_for_result,
)
from tests.fakes.discord_server import (
    CALLBACK_ROUTE,
    DELETE_ROUTE,
    EDIT_ROUTE,
    SEND_ROUTE,
)

HISTORY_ROUTE = "GET /channels/{channel_id}/messages"


async def test_the_result_is_a_new_message_that_notifies_its_owner_and_nobody_the_prompt_names(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        carol = fake.add_user("carol")
        fake.add_member(fake.guild, carol)
        prompt = f"a crowd @everyone @here <@&{fake.admin_role.id}> <@{carol.id}> <@{fake.admin.id}> --seed 5"
        status = await status_message(await fake.slash_command("imagine", {"prompt": prompt}))
        result = await wait_for_result(e2e, status.id)
        (job,) = await guild_jobs(e2e)
        (posted,) = fake.calls_to(SEND_ROUTE)

    assert fake.message(status.id).deleted
    assert job.result_message_id == result.id == int(posted.response["id"])
    assert result.content.startswith("**a crowd @\u200beveryone @\u200bhere")
    assert result.content.endswith(f"--seed 5** - <@{fake.user.id}>")
    assert result.mentions == [fake.user]
    # Whom Discord may notify is said explicitly: the owner, no @everyone, no roles, no one the prompt names.
    assert posted.payload["allowed_mentions"] == {"parse": [], "users": [fake.user.id]}
    assert [a.filename for a in result.attachments] == [f"imagine_{job.id}_grid.png"]
    assert result.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]


async def test_a_job_costs_three_discord_calls_beside_its_status_edits(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        since = fake.mark()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a frugal fox"}))
        result = await wait_for_result(e2e, status.id)
        calls = fake.calls[since:]

    edits = [c for c in calls if c.route == EDIT_ROUTE and c.params["message_id"] == str(status.id)]
    others = [(c.route, c.status) for c in calls if c not in edits]
    assert others == [(CALLBACK_ROUTE, 200), (SEND_ROUTE, 200), (DELETE_ROUTE, 204)]
    assert edits and [c for c in edits if c.files] == []  # status edits only; the image went in the post
    assert fake.calls_to(DELETE_ROUTE)[0].params["message_id"] == str(status.id) != str(result.id)


async def test_with_ping_off_the_result_names_the_owner_without_notifying_them(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        await (await fake.slash_command("settings", {"ping": False})).response()
        since = fake.mark()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a quiet fox"}))
        result = await wait_for_result(e2e, status.id)
        (posted,) = fake.calls_to(SEND_ROUTE, since=since)

    assert result.content == f"**a quiet fox --seed {seed_of(result.content)}** - <@{fake.user.id}>"
    assert result.mentions == []
    assert posted.payload["allowed_mentions"] == {"parse": []}
    assert fake.message(status.id).deleted


async def test_a_refused_post_puts_the_result_into_the_status_message(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        # The bot lost Send Messages in the channel; it may still edit its own message.
        fake.fail_next(SEND_ROUTE, 403, code=50013, message="Missing Permissions", uploading=True)
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a stubborn fox"}))
        result = await wait_for_result(e2e, status.id)
        (job,) = await guild_jobs(e2e)

    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [403]
    assert result.id == status.id == job.result_message_id and not result.deleted
    assert result.content == f"**a stubborn fox --seed {seed_of(result.content)}** - <@{fake.user.id}>"
    assert result.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert fake.calls_to(DELETE_ROUTE) == []


async def test_a_status_message_already_gone_gets_the_result_posted_without_an_edit(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a shy fox"}))
        await comfy.wait_paused()
        fake.message(status.id).deleted = True  # the member deleted it
        comfy.resume()
        result = await wait_for_result(e2e, status.id)
        (job,) = await guild_jobs(e2e)

    (posted,) = fake.calls_to(SEND_ROUTE)
    assert job.result_message_id == result.id == int(posted.response["id"]) and result.mentions == [fake.user]
    assert [c for c in fake.calls_to(EDIT_ROUTE) if c.files] == []  # the result was never edited anywhere
    assert [c.status for c in fake.calls_to(DELETE_ROUTE)] in ([], [404])


async def test_a_status_message_that_cannot_be_deleted_leaves_one_result_also_after_a_restart(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        fake.fail_next(DELETE_ROUTE, 503)
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a stuck fox"}))
        result = await wait_for_result(e2e, status.id)
        await e2e.restart()  # a job with a result message is done: nothing is posted again
        assert await e2e.bot.get_cog("Imagine").presenter.catch_up() == 0  # type: ignore[union-attr]
        (job,) = await guild_jobs(e2e)

    assert [c.status for c in fake.calls_to(DELETE_ROUTE)] == [503]
    assert not fake.message(status.id).deleted  # stale, but its job shows its result once
    assert job.result_message_id == result.id != status.id
    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [200]
    assert result_of(e2e, job.id) == result


async def test_a_result_posted_just_before_the_bot_stopped_is_found_not_posted_twice(tmp_path: Path) -> None:
    # The bot stops between posting the result and recording it: the next start offers the result again,
    # finds the message it already posted, records it and deletes the status message.
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        never = asyncio.get_running_loop().create_future()

        async def stopped_before_recording(job_id: int, channel_id: int, message_id: int) -> None:
            await never

        e2e.services.store.set_result_message = stopped_before_recording  # type: ignore[method-assign]
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a fox in a hurry"}))
        posted = await fake.wait_for_call(lambda c: c.route == SEND_ROUTE and c.ok, timeout=10)
        (before,) = await guild_jobs(e2e)
        await e2e.restart()
        await fake.wait_until(lambda: fake.message(status.id).deleted, timeout=10)
        await shown(e2e, before.id)
        (job,) = await guild_jobs(e2e)

    assert before.status is JobStatus.COMPLETED and before.result_message_id is None
    assert job.result_message_id == int(posted.response["id"])
    assert [c.status for c in fake.calls_to(SEND_ROUTE)] == [200]  # posted once, across the restart
    assert len(fake.calls_to(HISTORY_ROUTE)) == 1  # looked for it once, on the re-offer
    assert result_of(e2e, job.id) == fake.message(job.result_message_id)


def seed_of(content: str) -> int:
    """The seed a result's headline shows (a random one when the prompt gave none)."""
    return int(content.split("--seed ", 1)[1].split("*", 1)[0])
