"""The buttons under /imagine's results, through the real discord.py: U, V, reroll, upscale actions, cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.jobs import JobKind, JobStatus
from cogs._buttons import grid_view
from comfy.params import request_from_json
from tests.e2e import E2E, ephemeral_text, rows, running_bot, wait_for_result
from tests.fakes.discord_models import RecordedCall, StoredMessage
from tests.fakes.discord_server import SEND_ROUTE, InteractionHandle

UPSCALE_ROWS = [
    ["Vary (Strong)", "Vary (Subtle)", "Upscale 2x"],
    ["Zoom Out 1.5x", "Zoom Out 2x", "Custom Zoom", "Info"],
    ["⬅️", "➡️", "⬆️", "⬇️"],
]


async def answer(e2e: E2E, handle: InteractionHandle) -> str:
    """What the presser alone was told: the ephemeral response, or the followup after a deferral."""
    call = await handle.response()
    assert call.ok, call.response
    if call.payload["type"] == 4:
        return ephemeral_text(call)
    (message,) = await handle.wait_for_messages(1)
    assert message.ephemeral
    return message.content


async def imagine(e2e: E2E, prompt: str = "a red fox --seed 11") -> tuple[Any, StoredMessage]:
    """Run /imagine to the end; return the job and its grid message."""
    handle = await e2e.discord.slash_command("imagine", {"prompt": prompt})
    await handle.response()
    status = handle.original()
    assert status is not None
    grid = await wait_for_result(e2e, status.id)
    return await job_of(e2e, grid), grid


async def press(
    e2e: E2E, message: StoredMessage, custom_id: str, user: Any = None
) -> tuple[str, StoredMessage | None, RecordedCall | None]:
    """Press a button; return what the presser was told, and the new job's result if it queued one (with
    the call that posted its status message)."""
    fake = e2e.discord
    since = fake.mark()
    handle = await fake.click(message, custom_id, user=user)
    told = await answer(e2e, handle)
    posts = fake.calls_to(SEND_ROUTE, since=since)
    if not posts:
        return told, None, None
    status = fake.message(int(posts[0].response["id"]))
    return told, await wait_for_result(e2e, status.id), posts[0]


async def job_of(e2e: E2E, message: StoredMessage) -> Any:
    """The job a status or result message shows."""
    job = await e2e.services.store.job_by_message(message.id)
    assert job is not None, message.id
    return job


async def test_u2_posts_the_upscaled_image_in_reply_with_its_buttons(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        parent, grid = await imagine(e2e)
        told, upscaled, post = await press(e2e, grid, f"ci:upscale_2x:{parent.id}:2", user=fake.admin)
        assert upscaled is not None and post is not None
        job = await job_of(e2e, upscaled)
        outputs = await e2e.services.store.outputs(job.id)

    assert told.startswith(f"Queued: Upscale (2x) of image 2 (job #{job.id}")
    assert int(post.payload["message_reference"]["message_id"]) == grid.id
    assert (job.kind, job.action, job.parent_job_id, job.parent_index) == (
        JobKind.UPSCALE,
        "upscale_2x",
        parent.id,
        1,
    )
    assert job.user_id == fake.admin.id  # whoever presses owns the new job
    assert request_from_json(job.request_json).seed == request_from_json(parent.request_json).seed
    assert [a.filename for a in upscaled.attachments] == [f"imagine_{job.id}.png"]
    assert (outputs[0].width, outputs[0].height) == (128, 128)
    # The status message said what it was and replied to the grid; the result, a new message, does both
    # and notifies the member who pressed.
    status = fake.message(int(post.response["id"]))
    assert "(Upscale (2x) of image 2)" in status.content and status.deleted
    assert upscaled.content == f"**a red fox --seed 11** - Image #2 <@{fake.admin.id}>"
    assert upscaled.mentions == [fake.admin]
    reply = next(c for c in fake.calls_to(SEND_ROUTE) if c.response.get("id") == str(upscaled.id))
    assert int(reply.payload["message_reference"]["message_id"]) == grid.id
    assert rows(upscaled) == UPSCALE_ROWS
    assert upscaled.custom_ids() == [
        f"ci:vary_strong:{job.id}",
        f"ci:vary_subtle:{job.id}",
        f"ci:upscale_2x:{job.id}",
        f"ci:zoom_1.5:{job.id}",
        f"ci:zoom_2:{job.id}",
        f"ci:zoom_custom:{job.id}",
        f"ci:info:{job.id}",
        f"ci:pan_left:{job.id}",
        f"ci:pan_right:{job.id}",
        f"ci:pan_up:{job.id}",
        f"ci:pan_down:{job.id}",
    ]


async def test_v1_makes_a_variation_grid_and_reroll_a_new_grid_with_another_seed(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        parent, grid = await imagine(e2e)
        told_v, variation, _ = await press(e2e, grid, f"ci:vary_strong:{parent.id}:1")
        told_r, reroll, _ = await press(e2e, grid, f"ci:reroll:{parent.id}")
        assert variation is not None and reroll is not None
        variation_job, reroll_job = await job_of(e2e, variation), await job_of(e2e, reroll)
        graphs = e2e.comfy[0].received_prompts

    parent_seed = request_from_json(parent.request_json).seed
    assert "Variations (Strong) of image 1" in told_v
    assert (variation_job.kind, variation_job.parent_index) == (JobKind.VARIATION, 0)
    assert request_from_json(variation_job.request_json).seed != parent_seed
    assert (
        len(variation.custom_ids()) == 9
        and variation.custom_ids()[0] == f"ci:upscale_2x:{variation_job.id}:1"
    )

    assert "Reroll" in told_r
    reroll_request = request_from_json(reroll_job.request_json)
    assert reroll_job.kind is JobKind.REROLL and reroll_job.parent_job_id is None
    assert reroll_request.seed != parent_seed and reroll_request.text == "a red fox"
    assert len(reroll.custom_ids()) == 9 and f"--seed {reroll_request.seed}" in reroll.content
    # The reroll is a fresh text-to-image run: nothing is loaded from an image.
    assert not any(node["class_type"] == "LoadImage" for node in graphs[-1].values())


async def test_buttons_work_after_a_restart_with_nothing_in_memory(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        parent, grid = await imagine(e2e)
        await e2e.restart()
        told, upscaled, _ = await press(e2e, grid, f"ci:upscale_2x:{parent.id}:4")
        assert upscaled is not None
        job = await job_of(e2e, upscaled)

    assert "Upscale (2x) of image 4" in told
    assert job.status is JobStatus.COMPLETED and job.parent_index == 3


async def test_actions_from_an_upscale_and_the_info_button(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        parent, grid = await imagine(e2e)
        _, upscaled, _ = await press(e2e, grid, f"ci:upscale_2x:{parent.id}:3")
        assert upscaled is not None
        upscale_job = await job_of(e2e, upscaled)
        _, panned, _ = await press(e2e, upscaled, f"ci:pan_left:{upscale_job.id}")
        _, zoomed, _ = await press(e2e, upscaled, f"ci:zoom_2:{upscale_job.id}")
        assert panned is not None and zoomed is not None
        pan_job = await job_of(e2e, panned)
        info, _, _ = await press(e2e, upscaled, f"ci:info:{upscale_job.id}")
        pan_outputs = await e2e.services.store.outputs(pan_job.id)

    assert (pan_job.kind, pan_job.action, pan_job.parent_job_id) == (JobKind.PAN, "pan_left", upscale_job.id)
    assert (pan_outputs[0].width, pan_outputs[0].height) == (192, 128)  # half the width added on the left
    assert len(panned.custom_ids()) == 9 and len(zoomed.custom_ids()) == 9
    seed = request_from_json(upscale_job.request_json).seed
    assert f"**Seed:** {seed}" in info
    assert "**Model:** tiny" in info and "**Backend:** gpu0" in info
    assert f"`a red fox --seed {seed}`" in info
    link = f"https://discord.com/channels/{grid.guild_id}/{grid.channel_id}/{grid.id}"
    assert f"job #{parent.id} image 3 · {link}" in info


async def test_cancel_is_refused_to_other_members_and_allowed_to_the_owner_and_admins(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        carol = fake.add_user("carol")
        fake.add_member(fake.guild, carol)
        comfy.pause()
        handle = await fake.slash_command("imagine", {"prompt": "a long one"})
        await handle.response()
        status = handle.original()
        assert status is not None
        job_id = cancel_job_id(status)
        refused = await answer(e2e, await fake.click(status, f"ci:cancel:{job_id}", user=carol))
        still = await e2e.services.store.get(job_id)
        allowed = await answer(e2e, await fake.click(status, f"ci:cancel:{job_id}", user=fake.admin))
        comfy.resume()  # ComfyUI stops the running prompt; then the job ends as cancelled
        await fake.wait_until(lambda: "Cancelled" in str(fake.message(status.id).embeds), timeout=10)
        cancelled = await e2e.services.store.get(job_id)

    assert refused == f"Only <@{fake.user.id}> or an admin can cancel job #{job_id}."
    assert still is not None and still.status.is_active
    assert allowed == (
        f"Job #{job_id} is being stopped on the image server; its message will say when it is cancelled."
    )
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert fake.message(status.id).components == []


async def test_the_owner_cancels_a_job_still_waiting_in_the_bots_queue(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        comfy.pause()  # the backend holds two jobs (one running, one prefetched); the third waits
        handle = await fake.slash_command("imagine", {"prompt": "{first, second, third}"})
        *_, third = await handle.wait_for_messages(3)
        job_id = cancel_job_id(third)
        told = await answer(e2e, await fake.click(third, f"ci:cancel:{job_id}"))
        await fake.wait_until(lambda: "Cancelled" in str(fake.message(third.id).embeds), timeout=10)
        job = await e2e.services.store.get(job_id)
        comfy.resume()

    assert told == f"Job #{job_id} is cancelled."
    assert job is not None and job.status is JobStatus.CANCELLED and job.backend is None


async def test_a_button_pointing_at_another_servers_job_is_refused(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        parent, _ = await imagine(e2e)
        other = fake.add_guild("Other Server")
        channel = fake.add_channel(other, "general")
        fake.add_member(other, fake.user)
        await fake.announce_guild(other)
        forged = await e2e.bot.get_partial_messageable(channel.id, guild_id=other.id).send(
            "copied", view=grid_view(parent.id)
        )
        told, posted, _ = await press(e2e, fake.message(forged.id), f"ci:upscale_2x:{parent.id}:1")
        jobs = await e2e.services.store.list_guild_jobs(other.id)

    assert told == "That job belongs to another server."
    assert posted is None and jobs == []


def cancel_job_id(status: StoredMessage) -> int:
    """The job id a status message's Cancel button carries."""
    (custom_id,) = status.custom_ids()
    prefix, action, job_id = custom_id.split(":")
    assert (prefix, action) == ("ci", "cancel")
    return int(job_id)
