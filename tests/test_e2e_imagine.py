"""/imagine through the real discord.py against the fake Discord and the fake ComfyUI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from bot.events import Completed
from bot.jobs import JobStatus
from bot.services import Services
from tests.e2e import (
    E2E,
    GRID_IDS,
    ephemeral_text,
    guild_jobs,
    png,
    rows,
    running_bot,
    shown,
    status_message,
    wait_for_result,
)
from tests.fakes.discord_models import (
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_CHANNEL_MESSAGE,
    FLAG_EPHEMERAL,
    INTERACTION_APPLICATION_COMMAND,
    InteractionRecord,
)
from tests.fakes.discord_server import (
    EDIT_ORIGINAL_ROUTE,
    EDIT_ROUTE,
    FOLLOWUP_ROUTE,
    InteractionHandle,
)


async def restart_with_discord_config(e2e: E2E, **changes: Any) -> None:
    """Restart the bot with some `[discord]` settings changed (the config file is fixed at start)."""
    discord_config = e2e.config.discord.model_copy(update=changes)
    e2e.config = e2e.config.model_copy(update={"discord": discord_config})
    await e2e.restart()


# --------------------------------------------------------------------------------------------- the happy path


async def test_imagine_shows_queued_status_then_progress_then_posts_a_grid_with_nine_buttons(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.preview = True
        comfy.step_time = 0.05
        comfy.pause()
        handle = await fake.slash_command("imagine", {"prompt": "a lighthouse at dusk --steps 12 --seed 7"})
        call = await handle.response()
        status = await status_message(handle)
        (job,) = await guild_jobs(e2e)

        assert call.callback_type == CALLBACK_CHANNEL_MESSAGE
        assert not call.payload["data"].get("flags", 0) & FLAG_EPHEMERAL
        assert "**a lighthouse at dusk --steps 12 --seed 7**" in status.content
        assert f"<@{fake.user.id}>" in status.content
        assert status.embeds[0]["description"] == "⏳ Queued, position 1 in this server"
        assert status.custom_ids() == [f"ci:cancel:{job.id}"]

        await comfy.wait_paused()
        comfy.resume()
        progress = await fake.wait_for_call(
            lambda c: c.method == "PATCH" and "Step " in str(c.payload), timeout=10
        )
        result = await wait_for_result(e2e, status.id)
        job = await e2e.services.store.get(job.id)

    assert job is not None and (job.status_channel_id, job.status_message_id) == (fake.channel.id, status.id)
    assert progress.route == EDIT_ROUTE and progress.params["message_id"] == str(status.id)
    embed = progress.payload["embeds"][0]
    assert re.search(r"`█*░*` \d+%\nStep \d+/12", embed["description"]), embed["description"]
    assert embed["image"]["url"] == "attachment://preview.jpg"
    assert [f.filename for f in progress.files] == ["preview.jpg"]
    assert fake.calls_to(EDIT_ORIGINAL_ROUTE) == []  # every edit went through the channel message

    # The grid is a new message that notifies the member; the status message is gone.
    assert result.id == job.result_message_id != status.id and fake.message(status.id).deleted
    assert result.content == f"**a lighthouse at dusk --steps 12 --seed 7** - <@{fake.user.id}>"
    assert result.mentions == [fake.user]
    assert [a.filename for a in result.attachments] == [f"imagine_{job.id}_grid.png"]
    assert result.embeds == []
    assert result.custom_ids() == [i.format(job=job.id) for i in GRID_IDS]
    assert rows(result) == [["U1", "U2", "U3", "U4", "🔄"], ["V1", "V2", "V3", "V4"]]


async def test_result_message_is_recorded_for_the_job(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await e2e.discord.slash_command("imagine", {"prompt": "a fox"})
        status = await status_message(handle)
        (job,) = await guild_jobs(e2e)
        result = await wait_for_result(e2e, status.id)
        await shown(e2e, job.id)
        job = await e2e.services.store.get(job.id)

    assert job is not None and job.status is JobStatus.COMPLETED
    assert (job.result_channel_id, job.result_message_id) == (e2e.discord.channel.id, result.id)
    assert result.id != status.id and e2e.discord.message(status.id).deleted


async def test_progress_edits_are_at_least_the_edit_interval_apart(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.step_time = 0.03
        handle = await fake.slash_command("imagine", {"prompt": "a slow fox --steps 40"})
        status = await status_message(handle)
        await wait_for_result(e2e, status.id)
        interval = e2e.config.progress.edit_interval_s

    edits = [c for c in fake.calls_to(EDIT_ROUTE) if c.params["message_id"] == str(status.id)]
    progress = [c for c in edits if "Step " in str(c.payload)]
    assert len(progress) >= 2, [c.payload for c in edits]
    gaps = [b.at - a.at for a, b in itertools.pairwise(progress)]
    assert min(gaps) >= interval * 0.95, gaps
    # Besides progress only state changes are edited: started and the result.
    assert len(edits) <= len(progress) + 3
    running_time = edits[-1].at - edits[0].at
    assert len(progress) <= running_time / interval + 1


async def test_several_jobs_from_one_command_get_one_status_message_each(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        e2e.comfy[0].pause()
        handle = await fake.slash_command("imagine", {"prompt": "a {red, blue} car"})
        first, second = await handle.wait_for_messages(2)
        e2e.comfy[0].resume()
        first_result = await wait_for_result(e2e, first.id)
        second_result = await wait_for_result(e2e, second.id)
        jobs = sorted(await guild_jobs(e2e), key=lambda j: j.id)

    assert [j.status_message_id for j in jobs] == [first.id, second.id]
    assert [j.result_message_id for j in jobs] == [first_result.id, second_result.id]
    assert "a red car" in first_result.content and "a blue car" in second_result.content
    assert len(fake.calls_to(FOLLOWUP_ROUTE)) == 1


async def test_a_failed_job_says_why_and_loses_its_cancel_button(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        e2e.comfy[0].fail_node = "KSampler"
        status = await status_message(await fake.slash_command("imagine", {"prompt": "a doomed fox"}))
        await fake.wait_until(lambda: "Failed" in str(fake.message(status.id).embeds), timeout=10)
        failed = fake.message(status.id)

    (embed,) = failed.embeds
    assert embed["description"].startswith(
        "❌ **Failed:** The image server could not make this image (RuntimeError"
    )
    assert failed.components == [] and failed.attachments == []
    assert "**a doomed fox" in failed.content


async def test_the_model_option_autocompletes_from_the_configured_models(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await e2e.discord.autocomplete(
            "imagine", {"prompt": "a fox", "model": "OT"}, focused="model"
        )
        call = await handle.response()
    assert call.payload["data"]["choices"] == [{"name": "other", "value": "other"}]


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a fox --ar 9:1", "aspect ratio may go from"),
        ("a fox --seed", "`--seed` needs a value"),
        ("a fox --model nope", "Unknown model `nope`"),
        ("{a, b, c} fox --repeat 3", "at most 8"),
    ],
)
async def test_bad_parameters_are_refused_ephemerally_and_queue_nothing(
    tmp_path: Path, prompt: str, expected: str
) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await e2e.discord.slash_command("imagine", {"prompt": prompt})
        text = ephemeral_text(await handle.response())
        assert await guild_jobs(e2e) == []
    assert expected in text


async def test_banned_word_and_channel_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        art = fake.add_channel(fake.guild, "art")
        await restart_with_discord_config(e2e, banned_words=["Gore"], allowed_channel_ids=[art.id])

        banned = await fake.slash_command("imagine", {"prompt": "a scene full of GORE"}, channel=art)
        banned_text = ephemeral_text(await banned.response())
        elsewhere = await fake.slash_command("imagine", {"prompt": "a fox"})
        elsewhere_text = ephemeral_text(await elsewhere.response())
        gorefree = await fake.slash_command("imagine", {"prompt": "gorey-ish gorel"}, channel=art)
        accepted = await gorefree.response()
        jobs = await guild_jobs(e2e)

    assert "`Gore`" in banned_text and "does not allow" in banned_text
    assert f"<#{art.id}>" in elsewhere_text and "can't be made in this channel" in elsewhere_text
    assert accepted.callback_type == CALLBACK_CHANNEL_MESSAGE and len(jobs) == 1


async def test_a_direct_message_is_refused(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await dm_slash_command(e2e, "imagine", {"prompt": "a fox"})
        text = ephemeral_text(await handle.response())
        assert await guild_jobs(e2e) == []
    assert "only works in a server" in text


async def test_an_unexpected_error_gets_a_reference_the_member_can_quote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    async with running_bot(tmp_path) as e2e:
        cog = e2e.bot.get_cog("Imagine")
        assert cog is not None
        cog.service.prepare = broken  # type: ignore[attr-defined]
        with caplog.at_level(logging.ERROR, logger="cogs._errors"):
            handle = await e2e.discord.slash_command("imagine", {"prompt": "a fox"})
            text = ephemeral_text(await handle.response())

    found = re.fullmatch(
        r"Something went wrong \(ref ([0-9a-f]{6})\); an admin can look it up in the log\.", text
    )
    assert found, text
    logged = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "database on fire" in str(logged[0].exc_info[1])


# ------------------------------------------------------------------------------------------- image prompts


async def test_an_attached_image_becomes_an_image_prompt(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        attachment = fake.upload("photo.png", png())
        handle = await fake.slash_command("imagine", {"prompt": "make it blue --iw 1.5", "image": attachment})
        defer = await handle.response()
        (status,) = await handle.wait_for_messages(1)
        (job,) = await guild_jobs(e2e)
        result = await wait_for_result(e2e, status.id)
        name = f"imagine_prompt_{hashlib.sha256(attachment.data).hexdigest()[:32]}.png"
        uploaded = comfy.file(name, type="input")

    assert defer.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
    assert result.custom_ids()[0] == f"ci:upscale_2x:{job.id}:1"
    assert job.kind.value == "img2img" and job.image_prompt is not None
    assert uploaded == attachment.data
    graph = comfy.received_prompts[-1]
    assert any(node["class_type"] == "LoadImage" for node in graph.values())
    assert any(node["inputs"].get("denoise") == 0.55 for node in graph.values())


async def test_an_attachment_that_is_not_an_image_is_refused_without_a_public_trace(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        text_file = fake.upload("notes.txt", b"hello")
        refused = await fake.slash_command("imagine", {"prompt": "a fox", "image": text_file})
        refused_text = ephemeral_text(await refused.response())
        broken = fake.upload("broken.png", b"\x89PNG not really")
        handle = await fake.slash_command("imagine", {"prompt": "a fox", "image": broken})
        await handle.response()
        followup = await fake.wait_for_call(FOLLOWUP_ROUTE, timeout=5)
        jobs = await guild_jobs(e2e)

    assert "is not an image" in refused_text
    assert "not an image I can read" in ephemeral_text(followup)
    thinking = fake.message(handle.record.message_ids[0])
    assert thinking.deleted
    assert jobs == []


# ------------------------------------------------------------------------------------------------ helpers


async def dm_slash_command(e2e: E2E, name: str, options: dict[str, str]) -> InteractionHandle:
    """Dispatch a slash command from a direct message (the fake only builds guild interactions)."""
    fake = e2e.discord
    world = fake.world
    interaction_id = world.snowflake()
    dm_channel = world.snowflake()
    raw = f"interaction:{interaction_id}:{secrets.token_hex(48)}".encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": INTERACTION_APPLICATION_COMMAND,
        "data": {
            "id": str(world.snowflake()),
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
        },
        "channel_id": str(dm_channel),
        "channel": {"id": str(dm_channel), "type": 1, "recipients": [fake.user.payload()], "flags": 0},
        "user": fake.user.payload(),
        "token": token,
        "version": 1,
        "app_permissions": "0",
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"1": str(fake.user.id)},
        "context": 1,
        "attachment_size_limit": 10 * 1024 * 1024,
    }
    record = InteractionRecord(
        id=interaction_id,
        token=token,
        type=INTERACTION_APPLICATION_COMMAND,
        payload=payload,
        created_at=fake.clock.monotonic(),
        guild_id=None,
        channel_id=dm_channel,
        user=fake.user,
        response=asyncio.get_running_loop().create_future(),
    )
    world.interactions[interaction_id] = record
    world.interactions_by_token[token] = record
    await fake.dispatch("INTERACTION_CREATE", payload)
    return InteractionHandle(fake, record)


async def test_a_job_that_finished_while_the_bot_was_down_is_shown_after_the_restart(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        comfy.pause()
        handle = await e2e.discord.slash_command("imagine", {"prompt": "a harbour at night"})
        status = await status_message(handle)
        await comfy.wait_paused()
        (job,) = await guild_jobs(e2e)
        await e2e.stop()
        comfy.resume()
        await comfy.wait_finished(job.prompt_id)
        await e2e.restart()
        result = await wait_for_result(e2e, status.id)
        assert [a.filename for a in result.attachments] == [f"imagine_{job.id}_grid.png"]
        assert result.mentions == [e2e.discord.user] and e2e.discord.message(status.id).deleted
        assert len(comfy.received_prompts) == 1
        assert result.mentions == [e2e.discord.user] and e2e.discord.message(status.id).deleted


async def test_a_result_saved_but_never_posted_is_posted_when_the_bot_starts(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        comfy.pause()
        handle = await e2e.discord.slash_command("imagine", {"prompt": "a lighthouse in fog"})
        status = await status_message(handle)
        await comfy.wait_paused()
        (job,) = await guild_jobs(e2e)
        await e2e.stop()
        # The job completes in a process that has no Discord side (as if the bot died before posting).
        headless = Services(e2e.config)
        with headless.bus.subscribe() as events:
            await headless.start()
            comfy.resume()
            async with asyncio.timeout(10):
                while not isinstance(await events.get(), Completed):
                    pass
            await headless.close()
        assert e2e.discord.message(status.id).attachments == []
        await e2e.restart()
        result = await wait_for_result(e2e, status.id)
        assert [a.filename for a in result.attachments] == [f"imagine_{job.id}_grid.png"]
        assert result.mentions == [e2e.discord.user] and e2e.discord.message(status.id).deleted
