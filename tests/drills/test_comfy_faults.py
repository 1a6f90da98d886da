"""Drills: ComfyUI's socket drops, ComfyUI goes away and comes back, a backend answers 500; nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.backends import Backend
from bot.events import JobEvent, Queued, Subscription
from bot.jobs import Job, JobStatus
from tests.drills._checks import assert_nothing_lost, settled
from tests.e2e import E2E, guild_jobs, running_bot, status_message
from tests.fakes.discord_models import FakeUser, StoredMessage

WAITING = "No image server is reachable right now"
# Short enough for a drill, long enough for several health checks (E2E_CONFIG: health_interval_s 0.1).
SHORT_GRACE = {"backend_grace_s": 0.25}


class Health:
    """Lets a drill wait for the scheduler's view of a backend: notified after every health check."""

    def __init__(self, e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backends = e2e.services.scheduler.backends
        self._checked = asyncio.Condition()
        for backend in self.backends:
            monkeypatch.setattr(backend, "refresh", self._wrap(backend))

    def _wrap(self, backend: Backend) -> Callable[..., object]:
        original = backend.refresh

        async def refresh(clock: Callable[[], float] = time.monotonic) -> bool:
            try:
                return await original(clock)
            finally:
                async with self._checked:
                    self._checked.notify_all()

        return refresh

    async def wait(self, index: int, *, up: bool) -> None:
        """Wait until the scheduler has found backend `index` up (or down)."""
        async with asyncio.timeout(5), self._checked:
            await self._checked.wait_for(lambda: self.backends[index].up is up)

    async def wait_checks(self, count: int) -> None:
        """Wait until the scheduler has health-checked the backends `count` more times."""
        async with asyncio.timeout(5), self._checked:
            for _ in range(count * len(self.backends)):
                await self._checked.wait()


async def imagine(e2e: E2E, prompt: str, user: FakeUser | None = None) -> tuple[StoredMessage, Job]:
    """Run /imagine (as the default member unless `user`); return the status message and the new job."""
    before = len(await guild_jobs(e2e))
    status = await status_message(await e2e.discord.slash_command("imagine", {"prompt": prompt}, user=user))
    jobs = await guild_jobs(e2e)  # newest first
    assert len(jobs) == before + 1, status.content  # queued, not refused
    return status, jobs[0]


async def job_of(e2e: E2E, job: Job) -> Job:
    """The job as the database has it now."""
    fresh = await e2e.services.store.get(job.id)
    assert fresh is not None
    return fresh


def shown_texts(message: StoredMessage) -> list[str]:
    """Every status line (embed description) the message ever showed, oldest first."""
    payloads = [*message.history, message.payload()]
    return [str(embed.get("description", "")) for payload in payloads for embed in payload.get("embeds", [])]


async def wait_until_shown(e2e: E2E, message: StoredMessage, text: str) -> None:
    """Wait until the member's status message shows `text`."""
    await e2e.discord.wait_until(
        lambda: any(text in line for line in shown_texts(e2e.discord.message(message.id)))
    )


def showing(e2e: E2E, message: StoredMessage) -> str:
    """The status line the message shows now."""
    embeds = e2e.discord.message(message.id).embeds
    return str(embeds[0].get("description", "")) if embeds else ""


def results_posted(e2e: E2E, job: Job) -> list[StoredMessage]:
    """The live messages that carry the job's result image (`imagine_<id>.png`, `imagine_<id>_grid.png`)."""
    names = (f"imagine_{job.id}.", f"imagine_{job.id}_grid.")
    return [
        message
        for message in e2e.discord.world.messages.values()
        if not message.deleted and any(a.filename.startswith(names) for a in message.attachments)
    ]


def never_failed(e2e: E2E, message: StoredMessage) -> bool:
    """Whether the status message never told the member the job failed."""
    return not any("Failed" in line for line in shown_texts(e2e.discord.message(message.id)))


def shown_once(e2e: E2E, job: Job, status: StoredMessage) -> bool:
    """The result was posted once, as a new message, and the job's status message, which never said
    "Failed", is gone."""
    posted = [m.id for m in results_posted(e2e, job)]
    gone = e2e.discord.message(status.id).deleted
    return len(posted) == 1 and posted[0] != status.id and gone and never_failed(e2e, status)


async def next_event(events: Subscription, job: Job, kind: type[JobEvent]) -> JobEvent:
    """The job's next event of `kind` (within 5 s)."""
    async with asyncio.timeout(5):
        while True:
            event = await events.get()
            if event.job_id == job.id and isinstance(event, kind):
                return event


# ------------------------------------------------------------------------------------ the socket drops


async def test_socket_cut_mid_sampling_reconnects_and_the_job_completes_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        comfy.step_time = 0.02
        status, job = await imagine(e2e, "a lighthouse --steps 8 --seed 1")
        await comfy.wait_until(lambda: comfy.steps_done >= 2)
        comfy.pause()
        prompt_id, _, step = await comfy.wait_paused()
        await wait_until_shown(e2e, status, "Step ")  # the member saw it running
        connections = len(comfy.connections)

        await comfy.drop_sockets()
        await comfy.wait_until(lambda: len(comfy.connections) > connections)  # the bot reconnected
        comfy.resume()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.COMPLETED and job.attempts == 0
    assert job.prompt_id == prompt_id and 2 < step <= 8  # it was cut mid-steps
    assert len(comfy.received_prompts) == 1 and comfy.executed_prompt_ids == [prompt_id]
    assert shown_once(e2e, job, status)


async def test_prompt_that_finishes_while_the_connection_is_cut_is_collected_from_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        status, job = await imagine(e2e, "a harbour --seed 2")
        prompt_id, _, _ = await comfy.wait_paused()

        await comfy.stop()  # socket cut, server unreachable; the prompt goes on
        comfy.resume()
        await comfy.wait_finished(prompt_id)  # its last frames went nowhere
        await health.wait(0, up=False)
        assert (await job_of(e2e, job)).status is JobStatus.RUNNING
        await comfy.start()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.COMPLETED and job.attempts == 0
    assert f"GET /history/{prompt_id}" in comfy.requests  # the outcome came from /history
    assert len(comfy.received_prompts) == 1 and comfy.executed_prompt_ids == [prompt_id]
    assert shown_once(e2e, job, status)


# ---------------------------------------------------------------------------- ComfyUI away and back


async def test_comfyui_down_and_back_finishes_the_running_job_once_and_runs_the_one_that_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        first_status, first = await imagine(e2e, "a castle --seed 3")
        first_prompt, _, _ = await comfy.wait_paused()

        await comfy.stop()
        await health.wait(0, up=False)
        second_status, second = await imagine(e2e, "a moat --seed 4")
        await wait_until_shown(e2e, second_status, WAITING)  # the member is told why it waits
        assert (await job_of(e2e, second)).status is JobStatus.QUEUED

        await comfy.start()
        await health.wait(0, up=True)
        comfy.resume()
        jobs = await settled(e2e, count=2)
        await assert_nothing_lost(e2e, jobs)

    assert [job.status for job in jobs] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert [job.attempts for job in jobs] == [0, 0]
    second, first = jobs
    assert first.prompt_id == first_prompt
    assert len(comfy.received_prompts) == 2 and len(comfy.executed_prompt_ids) == 2
    assert shown_once(e2e, first, first_status) and shown_once(e2e, second, second_status)


async def test_comfyui_restarted_without_its_queue_runs_the_lost_job_again_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        status, job = await imagine(e2e, "a windmill --seed 5")
        lost_prompt, _, _ = await comfy.wait_paused()

        await comfy.stop()
        comfy.reset()  # the restarted server knows nothing of the prompt
        comfy.resume()
        await health.wait(0, up=False)
        await comfy.start()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.COMPLETED and job.attempts == 1  # one retry
    assert job.prompt_id != lost_prompt
    assert len(comfy.received_prompts) == 2
    assert comfy.executed_prompt_ids == [lost_prompt, job.prompt_id]
    assert shown_once(e2e, job, status)


# --------------------------------------------------------------------------- a backend answering 500


async def test_backend_answering_500_to_everything_hands_its_jobs_to_the_healthy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path, comfy_count=2, scheduler=SHORT_GRACE) as e2e:
        healthy, failing = e2e.comfy
        health = Health(e2e, monkeypatch)
        healthy.pause()
        failing.pause()
        statuses = [await imagine(e2e, f"a boat {index} --seed {index}") for index in range(4)]
        # Two on each backend (one running, one in ComfyUI's queue).
        await failing.wait_until(lambda: len(failing.received_prompts) == 2)
        await failing.wait_paused()

        failing.http_error = 500  # e.g. the proxy in front of it lost its upstream
        await failing.drop_sockets()
        await health.wait(1, up=False)
        healthy.resume()
        jobs = await settled(e2e, count=4)
        await assert_nothing_lost(e2e, jobs)

    assert all(job.status is JobStatus.COMPLETED and job.backend == "gpu0" for job in jobs)
    assert sorted(job.attempts for job in jobs) == [0, 0, 1, 1]  # the two moved over once
    assert len(healthy.received_prompts) == 4 and len(failing.received_prompts) == 2
    assert len(failing.executed_prompt_ids) == 1  # the second never left its queue
    assert failing.failed_requests  # the bot did ask, and got 500s
    for status, job in statuses:
        assert shown_once(e2e, job, status)


async def test_prompt_route_answering_500_twice_then_recovering_completes_the_job(tmp_path: Path) -> None:
    async with running_bot(tmp_path, scheduler=SHORT_GRACE) as e2e:
        comfy = e2e.comfy[0]
        comfy.fail_route("POST /prompt", times=2)
        status, _ = await imagine(e2e, "a lantern --seed 6")
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.COMPLETED and job.attempts == 2  # the third (last allowed) try
    assert comfy.failed_requests == ["POST /prompt", "POST /prompt"]
    assert len(comfy.received_prompts) == 1 and comfy.executed_prompt_ids == [job.prompt_id]
    assert shown_once(e2e, job, status)
    # while the only backend was paused after refusing, the member was told why the job waited
    assert any(WAITING in text for text in shown_texts(e2e.discord.message(status.id)))


async def test_backend_answering_500_for_a_while_makes_new_jobs_wait_then_everything_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        first_status, _ = await imagine(e2e, "a kite --seed 7")
        first_prompt, _, _ = await comfy.wait_paused()

        comfy.http_error = 500  # every new request; the open socket keeps working
        await health.wait(0, up=False)
        second_status, second = await imagine(e2e, "a dune --seed 8")
        await wait_until_shown(e2e, second_status, WAITING)
        assert (await job_of(e2e, second)).status is JobStatus.QUEUED

        comfy.http_error = None
        await health.wait(0, up=True)
        comfy.resume()
        jobs = await settled(e2e, count=2)
        await assert_nothing_lost(e2e, jobs)

    assert [(job.status, job.attempts) for job in jobs] == [(JobStatus.COMPLETED, 0)] * 2
    assert jobs[1].prompt_id == first_prompt
    assert len(comfy.received_prompts) == 2 and len(comfy.executed_prompt_ids) == 2
    assert shown_once(e2e, jobs[1], first_status) and shown_once(e2e, jobs[0], second_status)


async def test_prompt_route_answering_500_for_good_fails_the_job_after_max_attempts_and_says_why(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, scheduler=SHORT_GRACE) as e2e:
        comfy = e2e.comfy[0]
        comfy.fail_route("POST /prompt")
        status, _ = await imagine(e2e, "a comet --seed 9")
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    (job,) = jobs
    assert job.status is JobStatus.FAILED and job.attempts == 2
    assert job.error == "attempts/3/backend_unavailable: gpu0"
    assert comfy.failed_requests == ["POST /prompt"] * 3 and comfy.received_prompts == []
    final = e2e.discord.message(status.id)
    assert (
        final.embeds[0]["description"] == "❌ **Failed:** The job failed 3 times (backend gpu0 unavailable)."
    )
    assert not final.custom_ids()  # no Cancel button left on a job that ended


# ------------------------------------------------------------------------------------ bugs these drills found


async def test_a_job_refused_with_500_by_one_backend_waits_for_the_busy_healthy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path, comfy_count=2) as e2e:
        healthy, failing = e2e.comfy
        health = Health(e2e, monkeypatch)
        healthy.pause()
        failing.pause()
        for index in range(4):  # two on each backend (one running, one in ComfyUI's queue): all full
            await imagine(e2e, f"a tower {index} --seed {index}")
        await failing.wait_until(lambda: len(failing.received_prompts) == 2)
        await healthy.wait_until(lambda: len(healthy.received_prompts) == 2)
        carol = e2e.discord.add_user("carol")
        e2e.discord.add_member(e2e.discord.guild, carol)
        _, late = await imagine(e2e, "a bridge --seed 9", user=carol)  # the first member has 4 already

        failing.fail_route("POST /prompt")  # from now on; /system_stats still answers
        failing.resume()  # its two jobs finish, then it is the only backend with room
        await failing.wait_until(lambda: len(failing.failed_requests) >= 1)
        await health.wait_checks(3)  # a while later (three health checks),
        assert (await job_of(e2e, late)).status is not JobStatus.FAILED  # the job still waits
        healthy.resume()
        jobs = await settled(e2e, count=5)
        await assert_nothing_lost(e2e, jobs)

    assert all(job.status is JobStatus.COMPLETED for job in jobs)


async def test_a_job_abandoned_on_a_backend_that_comes_back_is_not_rendered_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path, scheduler=SHORT_GRACE) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        _, job = await imagine(e2e, "an island --seed 12")
        await comfy.wait_paused()
        with e2e.services.bus.subscribe() as events:
            await comfy.stop()  # down longer than the grace: the job goes back to the queue
            await next_event(events, job, Queued)
        await comfy.start()  # the network comes back; ComfyUI still holds the first prompt
        await health.wait(0, up=True)
        comfy.resume()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)
        await comfy.wait_until(lambda: comfy.running_id is None and not comfy.pending_ids)

    (job,) = jobs
    assert job.status is JobStatus.COMPLETED
    # Re-attached to its first prompt, or that prompt was stopped: never two full renders.
    stopped = set(comfy.interrupt_requests) | set(comfy.deleted_prompt_ids)
    assert set(comfy.executed_prompt_ids) - {job.prompt_id} <= stopped, comfy.executed_prompt_ids


async def test_a_job_sent_back_to_the_queue_while_no_server_is_up_tells_the_member_why_it_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(tmp_path, scheduler=SHORT_GRACE) as e2e:
        comfy = e2e.comfy[0]
        health = Health(e2e, monkeypatch)
        comfy.pause()
        status, job = await imagine(e2e, "a glacier --seed 13")
        await comfy.wait_paused()
        await e2e.discord.wait_until(lambda: not showing(e2e, status).startswith("⏳"))  # shown running
        with e2e.services.bus.subscribe() as events:
            await comfy.stop()
            await next_event(events, job, Queued)
        await e2e.discord.wait_until(lambda: showing(e2e, status).startswith("⏳"))  # shown queued again
        await health.wait_checks(3)  # time for anything more the bot has to say
        assert (await job_of(e2e, job)).status is JobStatus.QUEUED
        waiting = showing(e2e, status)
        comfy.resume()
        await comfy.start()
        jobs = await settled(e2e, count=1)
        await assert_nothing_lost(e2e, jobs)

    assert WAITING in waiting, waiting
