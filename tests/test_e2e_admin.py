"""/queue, /cancel and /status through the real discord.py, the fake Discord and the fake ComfyUI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.backends import Backend
from bot.events import Cancelled, Completed, JobEvent, Started, Subscription
from bot.jobs import Job, JobStatus
from tests.e2e import E2E, running_bot
from tests.factories import imagine_job
from tests.fakes.discord_models import (
    CALLBACK_AUTOCOMPLETE_RESULT,
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_UPDATE_MESSAGE,
    FakeUser,
    StoredMessage,
)

EPHEMERAL = 64


async def submit(e2e: E2E, user: FakeUser, *prompts: str) -> list[Job]:
    """Queue jobs straight through the scheduler, as /imagine would."""
    guild, channel, models = e2e.discord.guild.id, e2e.discord.channel.id, e2e.config.models
    new = [imagine_job(p, guild=guild, user=user.id, channel=channel, models=models) for p in prompts]
    return await e2e.services.scheduler.submit(new)


def watch_health(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> asyncio.Condition:
    """A condition notified after each health check the scheduler runs on `backend` (nothing announces them)."""
    checked = asyncio.Condition()
    original = backend.refresh

    async def refresh(clock: Callable[[], float] = time.monotonic) -> bool:
        try:
            return await original(clock)
        finally:
            async with checked:
                checked.notify_all()

    monkeypatch.setattr(backend, "refresh", refresh)
    return checked


async def event_for(subscription: Subscription, job_id: int, kind: type[JobEvent]) -> JobEvent:
    """The next event of `kind` for the job (within 5 s)."""
    async with asyncio.timeout(5):
        while True:
            event = await subscription.get()
            if event.job_id == job_id and isinstance(event, kind):
                return event


async def status_of(e2e: E2E, job_id: int) -> JobStatus:
    job = await e2e.services.store.get(job_id)
    assert job is not None
    return job.status


async def hold_two_in_flight(e2e: E2E, user: FakeUser, *prompts: str) -> list[Job]:
    """Submit with ComfyUI paused: the first job runs (blocked), the second waits in ComfyUI's queue."""
    comfy = e2e.comfy[0]
    comfy.pause()
    with e2e.services.bus.subscribe() as events:
        jobs = await submit(e2e, user, *prompts)
        await event_for(events, jobs[0].id, Started)
    await comfy.wait_paused()
    await comfy.wait_until(lambda: len(comfy.pending_ids) == 1)
    return jobs


def carol(e2e: E2E) -> FakeUser:
    """A second member without admin rights."""
    user = e2e.discord.add_user("carol", global_name="Carol")
    e2e.discord.add_member(e2e.discord.guild, user)
    return user


def embed_of(data: dict[str, Any]) -> dict[str, Any]:
    (embed,) = data["embeds"]
    return embed


def lines_of(message: StoredMessage) -> list[str]:
    return embed_of({"embeds": message.embeds})["description"].splitlines()


# ------------------------------------------------------------------------------------------ /queue


async def test_admin_queue_lists_running_and_waiting_jobs_with_positions_and_pages(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        other = carol(e2e)
        alice_jobs = await hold_two_in_flight(e2e, fake.user, *(f"a lighthouse number {i}" for i in range(7)))
        carol_jobs = await submit(e2e, other, *(f"a *fox* in the snow {i}" for i in range(6)))

        handle = await fake.slash_command("queue", user=fake.admin)
        call = await handle.response()
        panel = handle.original()
        assert panel is not None
        first_page, first_ids = lines_of(panel), panel.custom_ids()

        refused = await (await fake.click(panel, f"queue:{fake.admin.id}:1:next", user=other)).response()
        unchanged = fake.message(panel.id).edit_count

        turned = await (await fake.click(panel, f"queue:{fake.admin.id}:1:next", user=fake.admin)).response()
        second_page = lines_of(fake.message(panel.id))

    data = call.payload["data"]
    assert call.callback_type == CALLBACK_CHANNEL_MESSAGE and data["flags"] & EPHEMERAL
    assert data["allowed_mentions"]["parse"] == []
    assert embed_of(data)["footer"]["text"] == "Page 1/2 · 2 running · 11 waiting"
    assert first_page[0] == (
        f"**1.** `#{alice_jobs[0].id}` · running on gpu0 · <@{fake.user.id}> · a lighthouse number 0"
    )
    assert first_page[1].startswith(f"**2.** `#{alice_jobs[1].id}` · starting on gpu0 · <@{fake.user.id}>")
    # Waiting jobs alternate between the two members (round robin), with their place in line.
    assert first_page[2] == (
        f"**3.** `#{carol_jobs[0].id}` · waiting, 1st in line · <@{other.id}> · a \\*fox\\* in the snow 0"
    )
    assert first_page[3].startswith(f"**4.** `#{alice_jobs[2].id}` · waiting, 2nd in line")
    assert len(first_page) == 10
    assert first_ids == [
        f"queue:{fake.admin.id}:0:prev",
        f"queue:{fake.admin.id}:0:refresh",
        f"queue:{fake.admin.id}:1:next",
    ]
    assert refused.payload["data"]["flags"] & EPHEMERAL
    assert "Only the person who ran /queue" in refused.payload["data"]["content"]
    assert unchanged == 0
    assert turned.callback_type == CALLBACK_UPDATE_MESSAGE
    assert [line.split(" · ")[0] for line in second_page] == [
        f"**11.** `#{carol_jobs[4].id}`",
        f"**12.** `#{alice_jobs[6].id}`",
        f"**13.** `#{carol_jobs[5].id}`",
    ]
    assert embed_of({"embeds": fake.message(panel.id).embeds})["footer"]["text"].startswith("Page 2/2")
    next_button = fake.message(panel.id).find_component(f"queue:{fake.admin.id}:2:next")
    assert next_button is not None and next_button["disabled"] is True


async def test_member_queue_shows_only_their_own_jobs(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        other = carol(e2e)
        comfy = e2e.comfy[0]
        comfy.pause()
        carols = await submit(e2e, other, "carol's castle")
        alices = await submit(e2e, fake.user, "alice's lighthouse", "alice's harbour")
        await comfy.wait_paused()  # carol's job runs, alice's first waits in ComfyUI's queue
        await comfy.wait_until(lambda: len(comfy.pending_ids) == 1)

        call = await (await fake.slash_command("queue", user=fake.user)).response()

    embed = embed_of(call.payload["data"])
    assert call.payload["data"]["flags"] & EPHEMERAL
    assert embed["title"] == "Your jobs in this server"
    text = embed["description"]
    assert all(f"`#{job.id}`" in text for job in alices)
    assert f"`#{carols[0].id}`" not in text and "castle" not in text
    assert "<@" not in text  # a member's own list names nobody
    assert embed["footer"]["text"] == "Page 1/1 · 1 running · 1 waiting"


# ------------------------------------------------------------------------------------------ /cancel


async def test_owner_cancels_a_running_job_by_interrupting_its_prompt_only(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        running, _waiting = await hold_two_in_flight(e2e, fake.user, "a lighthouse", "a harbour")
        prompt_id = (await e2e.services.store.get(running.id)).prompt_id  # type: ignore[union-attr]
        with e2e.services.bus.subscribe() as events:
            call = await (
                await fake.slash_command("cancel", {"job": str(running.id)}, user=fake.user)
            ).response()
            comfy.resume()  # a paused sampler only notices the interrupt when it may step again
            await event_for(events, running.id, Cancelled)
        final = await status_of(e2e, running.id)

    assert call.payload["data"]["flags"] & EPHEMERAL
    assert call.payload["data"]["content"].startswith(f"Cancelled job #{running.id} (it was running on gpu0)")
    assert final is JobStatus.CANCELLED
    assert comfy.interrupt_requests == [prompt_id]
    assert comfy.global_interrupts == 0


async def test_owner_cancels_a_prompt_waiting_in_comfyui_by_deleting_it_from_the_queue(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        running, pending = await hold_two_in_flight(e2e, fake.user, "a lighthouse", "a harbour")
        prompt_id = (await e2e.services.store.get(pending.id)).prompt_id  # type: ignore[union-attr]
        with e2e.services.bus.subscribe() as events:
            await (await fake.slash_command("cancel", {"job": f"#{pending.id}"}, user=fake.user)).response()
            await event_for(events, pending.id, Cancelled)
        final = await status_of(e2e, pending.id)
        still = await status_of(e2e, running.id)

    assert final is JobStatus.CANCELLED
    assert comfy.deleted_prompt_ids == [prompt_id] and prompt_id not in comfy.pending_ids
    assert comfy.global_interrupts == 0
    assert still is JobStatus.RUNNING


async def test_another_member_may_not_cancel_and_nothing_changes(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        other = carol(e2e)
        jobs = await hold_two_in_flight(e2e, fake.user, "a lighthouse", "a harbour", "a pier")
        calls = [
            await (await fake.slash_command("cancel", {"job": str(job.id)}, user=other)).response()
            for job in jobs
        ]
        statuses = [await status_of(e2e, job.id) for job in jobs]

    for call, job in zip(calls, jobs, strict=True):
        assert call.payload["data"]["flags"] & EPHEMERAL
        assert call.payload["data"]["content"].startswith(f"Job #{job.id} is not yours")
    assert statuses == [JobStatus.RUNNING, JobStatus.SUBMITTED, JobStatus.QUEUED]
    assert comfy.interrupt_requests == [] and comfy.deleted_prompt_ids == []


async def test_admin_cancels_someone_elses_waiting_job(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        *_, queued = await hold_two_in_flight(e2e, fake.user, "a lighthouse", "a harbour", "a pier")
        call = await (await fake.slash_command("cancel", {"job": str(queued.id)}, user=fake.admin)).response()
        final = await status_of(e2e, queued.id)

    assert call.payload["data"]["content"].startswith(
        f"Cancelled job #{queued.id} of another member (it was waiting)"
    )
    assert final is JobStatus.CANCELLED


async def test_cancel_of_a_job_that_is_no_job_is_explained(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        words = await (await fake.slash_command("cancel", {"job": "the fox one"}, user=fake.user)).response()
        unknown = await (await fake.slash_command("cancel", {"job": "#404"}, user=fake.admin)).response()

    assert words.payload["data"]["flags"] & EPHEMERAL
    assert "is not a job" in words.payload["data"]["content"]
    assert unknown.payload["data"]["content"].startswith("There is no job #404 in this server")


async def test_cancel_autocomplete_offers_only_cancellable_jobs_members_their_own(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        other = carol(e2e)
        e2e.comfy[0].pause()
        (done,) = await submit(e2e, fake.user, "an old one")
        await e2e.services.scheduler.cancel(done.id)
        alices = await submit(e2e, fake.user, "a lighthouse " + "very " * 40 + "tall", "a harbour")
        carols = await submit(e2e, other, "a castle")

        member = await (
            await fake.autocomplete("cancel", {"job": ""}, focused="job", user=fake.user)
        ).response()
        admin = await (
            await fake.autocomplete("cancel", {"job": ""}, focused="job", user=fake.admin)
        ).response()
        typed = await (
            await fake.autocomplete("cancel", {"job": "harb"}, focused="job", user=fake.admin)
        ).response()

    assert member.callback_type == CALLBACK_AUTOCOMPLETE_RESULT
    member_choices = member.payload["data"]["choices"]
    assert [c["value"] for c in member_choices] == [str(alices[1].id), str(alices[0].id)]
    assert all(len(c["name"]) <= 100 for c in member_choices)
    assert member_choices[1]["name"].startswith(f"#{alices[0].id} · ") and member_choices[1]["name"].endswith(
        "…"
    )
    admin_values = [c["value"] for c in admin.payload["data"]["choices"]]
    assert admin_values == [str(carols[0].id), str(alices[1].id), str(alices[0].id)]
    assert str(done.id) not in admin_values
    assert [c["value"] for c in typed.payload["data"]["choices"]] == [str(alices[1].id)]


# ------------------------------------------------------------------------------------------ /status


async def test_status_shows_a_backend_up_then_down_and_todays_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        with e2e.services.bus.subscribe() as events:
            (done,) = await submit(e2e, fake.user, "a lighthouse")
            await event_for(events, done.id, Completed)
        await hold_two_in_flight(e2e, fake.user, "a harbour", "a pier", "a boat")
        up = await (await fake.slash_command("status", user=fake.user)).response()

        backend = e2e.services.scheduler.backends[0]
        checked = watch_health(backend, monkeypatch)
        await e2e.comfy[0].stop()
        async with asyncio.timeout(5), checked:
            await checked.wait_for(lambda: not backend.up)
        down_admin = await (await fake.slash_command("status", user=fake.admin)).response()
        down_member = await (await fake.slash_command("status", user=fake.user)).response()

    embed = embed_of(up.payload["data"])
    assert up.payload["data"]["flags"] & EPHEMERAL
    assert embed["title"] == "Image servers: 1 of 1 up"
    # The fake reports the recorded CPU-only server: 23.5 GiB of RAM standing in for VRAM.
    assert (
        embed["description"] == "🟢 **gpu0** — up · ComfyUI 0.3.64 · 2/2 jobs · RAM (no GPU) 0.7 / 23.5 GiB"
    )
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {
        "This server's queue": "1 waiting · 2 running",
        "Today (since 00:00 UTC)": "1 done · 0 failed · 0 cancelled",
    }
    admin_embed = embed_of(down_admin.payload["data"])
    assert admin_embed["title"] == "Image servers: 0 of 1 up"
    first, error = admin_embed["description"].splitlines()
    assert first == "🔴 **gpu0** — down · ComfyUI 0.3.64 · 2/2 jobs"
    assert error.startswith("  last error: ") and "unavailable" in error
    member_embed = embed_of(down_member.payload["data"])
    assert member_embed["description"] == first
    assert "start when an image server is back" in member_embed["footer"]["text"]


async def test_status_shows_a_backend_paused_after_a_failed_prompt_with_the_reason_for_admins(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        backend = e2e.services.scheduler.backends[0]
        backend.prompt_refused(time.monotonic(), 3600.0, "ComfyUI answered POST /prompt with HTTP 500")
        admin = await (await fake.slash_command("status", user=fake.admin)).response()
        member = await (await fake.slash_command("status", user=fake.user)).response()

    first, error = embed_of(admin.payload["data"])["description"].splitlines()
    assert first.startswith("🟠 **gpu0** — up, paused after a failed prompt · ComfyUI 0.3.64 · 0/2 jobs")
    assert error == "  last error: ComfyUI answered POST /prompt with HTTP 500"
    assert embed_of(member.payload["data"])["description"] == first  # the reason is for admins only
