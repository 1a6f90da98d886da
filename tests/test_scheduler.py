"""The scheduler against fake ComfyUI servers and a real SQLite store: dispatch, prefetch, cancel, restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.backend_health import BackendHealth
from bot.backends import MAX_PAUSE_S, Backend, stable_client_id
from bot.events import Cancelled, Completed, EventBus, Failed, JobEvent, Progress, Started
from bot.inflight import InFlightJob, InFlightJobs
from bot.jobs import JobStatus
from bot.outputs import OutputStore
from bot.reasons import Failure, FailureKind
from bot.scheduler import Scheduler, SchedulerSettings
from bot.store import JobStore
from comfy.client import ComfyClient
from comfy.profiles import BackendConfig
from comfy.render import RenderError, RenderProblem
from comfy.workflow import TemplateRegistry, load_builtin_templates
from tests.factories import TINY, imagine_job
from tests.fakes.comfy_server import FakeComfyUI

TIMEOUT = 10.0


class Harness:
    """A scheduler wired to fakes; `restart()` builds a new one on the same database and servers."""

    def __init__(self, tmp_path: Path, fakes: Sequence[FakeComfyUI], **settings: float) -> None:
        self.tmp_path = tmp_path
        self.fakes = fakes
        self.settings = SchedulerSettings(
            models=[TINY],
            health_interval_s=settings.pop("health_interval_s", 0.05),
            backend_grace_s=settings.pop("backend_grace_s", 5.0),
            job_timeout_s=settings.pop("job_timeout_s", 30.0),
            max_attempts=int(settings.pop("max_attempts", 3)),
        )
        self.prefetch = int(settings.pop("prefetch", 1))
        self.bus = EventBus()
        self.sub = self.bus.subscribe()
        self.events: list[JobEvent] = []
        self._new_event = asyncio.Event()
        self._collector = asyncio.create_task(self._collect())
        self.store: JobStore
        self.scheduler: Scheduler

    async def _collect(self) -> None:
        while True:
            self.events.append(await self.sub.get())
            self._new_event.set()

    async def event(self, kind: type[JobEvent], job_id: int) -> JobEvent:
        """The first event of `kind` for `job_id` (waiting for it); fails if the job ended otherwise."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                for event in self.events:
                    if event.job_id != job_id:
                        continue
                    if isinstance(event, kind):
                        return event
                    if event.terminal:
                        raise AssertionError(f"job {job_id} ended with {event!r}, not {kind.__name__}")
                self._new_event.clear()
                await self._new_event.wait()

    async def open(self, start: bool = True) -> Harness:
        db = str(self.tmp_path / "jobs.db")
        self.store = await JobStore.open(db)
        backends = []
        for index, fake in enumerate(self.fakes):
            config = BackendConfig(name=f"gpu{index}", url=fake.url, timeout_s=5)
            client = ComfyClient(config, client_id=stable_client_id(db, config.name))
            backends.append(Backend(config=config, client=client, prefetch=self.prefetch))
        self.scheduler = Scheduler(
            store=self.store,
            backends=backends,
            templates=TemplateRegistry(load_builtin_templates()),
            outputs=OutputStore(self.tmp_path / "out"),
            bus=self.bus,
            settings=self.settings,
        )
        if start:
            await self.scheduler.start()
        return self

    async def close(self) -> None:
        await self.scheduler.stop(grace_s=1.0)
        await self.store.close()

    async def restart(self) -> None:
        await self.close()
        await self.open()

    async def status(self, job_id: int) -> JobStatus:
        job = await self.store.get(job_id)
        assert job is not None
        return job.status


@asynccontextmanager
async def harness(
    tmp_path: Path, count: int = 1, start: bool = True, **settings: float
) -> AsyncIterator[Harness]:
    fakes = [FakeComfyUI(step_time=0.002) for _ in range(count)]
    for fake in fakes:
        await fake.start()
    h = Harness(tmp_path, fakes, **settings)
    await h.open(start=start)
    try:
        yield h
    finally:
        await h.close()
        h._collector.cancel()
        for fake in fakes:
            await fake.close()


async def test_a_job_runs_to_completion_with_progress_and_saved_images(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        (job,) = await h.scheduler.submit([imagine_job()])
        started = await h.event(Started, job.id)
        assert started.backend == "gpu0"
        progress = await h.event(Progress, job.id)
        assert progress.total == 4
        done = await h.event(Completed, job.id)
        files = [Path(p) for p in (*done.paths, done.grid_path or "missing")]
        assert len(done.paths) == 4 and all(p.is_file() for p in files)
        assert await h.status(job.id) is JobStatus.COMPLETED
        assert len(await h.store.outputs(job.id)) == 4
        (body,) = h.fakes[0].received_bodies
        assert body["client_id"] == h.scheduler.backends[0].client.client_id


async def test_a_job_in_flight_has_one_record_holding_a_slot_on_its_backend(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        backend = h.scheduler.backends[0]
        h.fakes[0].pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await h.event(Started, job.id)
        record = h.scheduler.inflight.get(job.id)
        assert record is not None and record.backend is backend and record.executing
        assert backend.jobs == {job.id} and backend.free_slots == backend.capacity - 1
        h.fakes[0].resume()
        await h.event(Completed, job.id)
        assert record.task is not None
        await record.task
        assert h.scheduler.inflight.get(job.id) is None and not record.executing
        assert backend.jobs == set() and backend.free_slots == backend.capacity


async def test_a_record_replaced_by_a_new_claim_frees_its_slot_and_leaves_the_new_one(tmp_path: Path) -> None:
    async with harness(tmp_path, count=2, start=False) as h:
        first, second = h.scheduler.backends
        (job,) = await h.store.enqueue_many([imagine_job()])
        inflight = InFlightJobs()
        old, new = InFlightJob(job, first), InFlightJob(job, second)
        inflight.add(old)
        assert first.jobs == {job.id}
        inflight.add(new)  # the job went back to the queue and was claimed again before its old task ended
        assert (first.jobs, second.jobs) == (set(), {job.id})
        assert not inflight.remove(old)  # the old task ends: nothing of the new claim is freed
        assert second.jobs == {job.id} and inflight.get(job.id) is new
        assert inflight.remove(new) and second.jobs == set() and len(inflight) == 0


async def test_a_cancel_landing_while_the_job_is_being_claimed_stops_it_before_it_is_posted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(tmp_path, start=False) as h:
        backend = h.scheduler.backends[0]
        await h.scheduler.health.refresh()
        await h.store.enqueue_many([imagine_job()])
        claimed = await h.store.claim_next(backend.name)  # the dispatcher has it, but does not follow it yet
        assert claimed is not None
        cancel_on_comfyui = backend.client.cancel

        async def claim_finishing_meanwhile(prompt_id: str) -> None:
            record = InFlightJob(claimed, backend)
            h.scheduler._spawn(record, h.scheduler.runner.run(record))
            await cancel_on_comfyui(prompt_id)

        monkeypatch.setattr(backend.client, "cancel", claim_finishing_meanwhile)
        assert await h.scheduler.cancel(claimed.id) is JobStatus.SUBMITTED
        await h.event(Cancelled, claimed.id)
        assert h.fakes[0].received_prompts == []
        assert await h.status(claimed.id) is JobStatus.CANCELLED


async def test_prefetch_keeps_one_prompt_waiting_in_comfyui_under_backlog(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        jobs = await h.scheduler.submit([imagine_job(user=u) for u in range(100, 105)])
        await fake.wait_paused()
        await fake.wait_until(lambda: len(fake.pending_ids) == 1)
        assert [await h.status(j.id) for j in jobs].count(JobStatus.QUEUED) == 3
        # Each time a prompt ends, the next one is already waiting in ComfyUI's queue.
        fake.resume()
        for job in jobs:
            await h.event(Completed, job.id)
        assert len(fake.executed_prompt_ids) == 5
        assert fake.history_count() == 5


async def test_six_jobs_from_two_guilds_start_alternately_by_guild(tmp_path: Path) -> None:
    async with harness(tmp_path, start=False) as h:
        jobs = await h.store.enqueue_many(
            [imagine_job(guild=1, user=1)] * 3 + [imagine_job(guild=2, user=2)] * 3
        )
        by_prompt: dict[str, int] = {}
        await h.scheduler.start()
        for job in jobs:
            await h.event(Completed, job.id)
        for job in jobs:
            stored = await h.store.get(job.id)
            assert stored is not None and stored.prompt_id
            by_prompt[stored.prompt_id] = stored.guild_id
        order = [by_prompt[p] for p in h.fakes[0].executed_prompt_ids]
        assert order == [1, 2, 1, 2, 1, 2]


async def test_cancel_of_a_waiting_job_removes_it_from_the_queue(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.fakes[0].pause()
        _, second, third = await h.scheduler.submit([imagine_job(user=u) for u in (1, 2, 3)])
        await h.fakes[0].wait_paused()
        assert await h.scheduler.cancel(third.id) is JobStatus.QUEUED
        await h.event(Cancelled, third.id)
        assert await h.status(third.id) is JobStatus.CANCELLED
        h.fakes[0].resume()
        await h.event(Completed, second.id)
        assert len(h.fakes[0].received_prompts) == 2


async def test_cancel_of_a_prompt_pending_in_comfyui_deletes_it_there(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        first, second = await h.scheduler.submit([imagine_job(user=1), imagine_job(user=2)])
        await fake.wait_until(lambda: len(fake.pending_ids) == 1)
        stored = await h.store.get(second.id)
        assert stored is not None and stored.status is JobStatus.SUBMITTED
        await h.scheduler.cancel(second.id)
        await h.event(Cancelled, second.id)
        assert fake.deleted_prompt_ids == [stored.prompt_id]
        fake.resume()
        await h.event(Completed, first.id)
        assert stored.prompt_id not in fake.executed_prompt_ids
        assert fake.global_interrupts == 0


async def test_cancel_of_a_running_job_interrupts_only_that_prompt(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await h.event(Started, job.id)
        await fake.wait_paused()
        stored = await h.store.get(job.id)
        assert stored is not None
        await h.scheduler.cancel(job.id)
        fake.resume()
        await h.event(Cancelled, job.id)
        assert await h.status(job.id) is JobStatus.CANCELLED
        assert stored.prompt_id in fake.interrupt_requests
        assert fake.global_interrupts == 0


async def test_a_node_error_fails_the_job_with_a_short_reason(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.fakes[0].fail_node = "KSampler"
        (job,) = await h.scheduler.submit([imagine_job()])
        failed = await h.event(Failed, job.id)
        assert isinstance(failed, Failed) and failed.failure.kind is FailureKind.EXECUTION_FAILED
        assert "RuntimeError" in failed.failure.detail and "tensor([[" not in failed.failure.detail
        assert len(failed.failure.detail) < 300
        stored = await h.store.get(job.id)
        assert stored is not None and Failure.decode(stored.error) == failed.failure
        assert await h.status(job.id) is JobStatus.FAILED


async def test_a_job_over_its_timeout_fails_and_is_interrupted_by_id(tmp_path: Path) -> None:
    async with harness(tmp_path, job_timeout_s=0.5) as h:
        fake = h.fakes[0]
        fake.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        failed = await h.event(Failed, job.id)
        assert isinstance(failed, Failed) and failed.failure == Failure(FailureKind.TIMED_OUT, number=0.5)
        stored = await h.store.get(job.id)
        assert stored is not None and stored.prompt_id in fake.interrupt_requests
        assert fake.global_interrupts == 0
        fake.resume()


async def test_restart_reattaches_a_running_job_without_generating_it_again(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await fake.wait_paused()
        await h.close()  # the bot goes away mid-run; ComfyUI keeps the prompt
        await h.open()
        fake.resume()
        await h.event(Completed, job.id)
        assert len(fake.received_prompts) == 1
        assert fake.history_count() == 1


async def test_restart_completes_a_job_that_finished_while_the_bot_was_down(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await fake.wait_paused()
        stored = await h.store.get(job.id)
        assert stored is not None and stored.prompt_id
        await h.close()
        fake.resume()
        await fake.wait_finished(stored.prompt_id)
        await h.open()
        done = await h.event(Completed, job.id)
        assert len(done.paths) == 4
        assert len(fake.received_prompts) == 1


async def test_restart_requeues_a_job_the_server_lost(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        fake = h.fakes[0]
        fake.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await fake.wait_paused()
        await h.close()
        fake.reset()  # ComfyUI restarted too: its queue and history are gone
        fake.resume()
        await h.open()
        await h.event(Completed, job.id)
        stored = await h.store.get(job.id)
        assert stored is not None and stored.attempts == 1
        assert len(fake.received_prompts) == 2


async def test_a_backend_that_dies_mid_job_hands_the_job_to_another(tmp_path: Path) -> None:
    async with harness(tmp_path, count=2, backend_grace_s=0.3, prefetch=0) as h:
        dying, healthy = h.fakes
        dying.pause()
        healthy.pause()
        first, second = await h.scheduler.submit([imagine_job(user=1), imagine_job(user=2)])
        await dying.wait_paused()
        await healthy.wait_paused()
        placed = {j.id: (await h.store.get(j.id)).backend for j in (first, second)}  # type: ignore[union-attr]
        job_on_dying = first if placed[first.id] == "gpu0" else second
        healthy.resume()
        await dying.stop()
        dying.reset()
        await h.event(Completed, job_on_dying.id)
        stored = await h.store.get(job_on_dying.id)
        assert stored is not None and stored.backend == "gpu1" and stored.attempts == 1


async def test_an_upscale_uploads_the_parent_image_and_makes_one_image(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        (parent,) = await h.scheduler.submit([imagine_job()])
        await h.event(Completed, parent.id)
        child_spec = imagine_job(user=200, parent_job_id=parent.id, parent_index=2, action="upscale_2x")
        (child,) = await h.scheduler.submit([child_spec])
        done = await h.event(Completed, child.id)
        assert len(done.paths) == 1 and done.grid_path is None
        assert h.fakes[0].file(f"imagine_{parent.id}_2.png", type="input") is not None


async def test_a_follow_up_that_cannot_be_rendered_fails_with_the_render_problem(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        (parent,) = await h.scheduler.submit([imagine_job()])
        await h.event(Completed, parent.id)
        # An action this version does not know (a job queued by another version of the bot).
        child_spec = imagine_job(user=200, parent_job_id=parent.id, parent_index=0, action="melt")
        (child,) = await h.scheduler.submit([child_spec])
        failed = await h.event(Failed, child.id)
        assert isinstance(failed, Failed) and failed.failure.kind is FailureKind.NOT_RENDERABLE
        error = RenderError.decode(failed.failure.detail)
        assert error is not None and (error.problem, error.action) == (RenderProblem.UNKNOWN_ACTION, "melt")
        stored = await h.store.get(child.id)
        assert stored is not None and Failure.decode(stored.error) == failed.failure
        assert len(h.fakes[0].received_prompts) == 1  # the parent's only


@pytest.mark.parametrize("count", [2, 4])
async def test_jobs_spread_over_every_backend(tmp_path: Path, count: int) -> None:
    async with harness(tmp_path, count=count) as h:
        for fake in h.fakes:
            fake.pause()
        jobs = await h.scheduler.submit([imagine_job(user=u) for u in range(count)])
        for fake in h.fakes:
            await fake.wait_paused()
        for fake in h.fakes:
            fake.resume()
        for job in jobs:
            await h.event(Completed, job.id)
        assert all(len(fake.executed_prompt_ids) == 1 for fake in h.fakes)


async def test_a_job_whose_backend_is_down_at_restart_goes_to_another_after_the_grace(tmp_path: Path) -> None:
    async with harness(tmp_path, count=2, backend_grace_s=0.3, prefetch=0) as h:
        first_server, second_server = h.fakes
        second_server.pause()
        first_server.pause()
        (job,) = await h.scheduler.submit([imagine_job()])
        await first_server.wait_paused()
        stored = await h.store.get(job.id)
        assert stored is not None and stored.backend == "gpu0"
        await h.close()
        await first_server.stop()  # gone while the bot restarts, and it does not come back
        first_server.reset()
        second_server.resume()
        await h.open()
        await h.event(Completed, job.id)
        stored = await h.store.get(job.id)
        assert stored is not None and stored.backend == "gpu1" and stored.attempts == 1


async def test_a_backend_that_fails_prompts_pauses_doubling_each_time_until_one_is_accepted() -> None:
    config = BackendConfig(name="gpu0", url="http://127.0.0.1:9", timeout_s=5)
    backend = Backend(config=config, client=ComfyClient(config), up=True)
    try:
        assert backend.available and backend.free_slots == 2
        pauses = [backend.prompt_refused(100.0, 2.0, "HTTP 500") for _ in range(12)]
        assert pauses[:4] == [2.0, 4.0, 8.0, 16.0] and pauses[-1] == MAX_PAUSE_S
        assert not backend.available and backend.free_slots == 0 and backend.refusal == "HTTP 500"
        assert not backend.pause_over(100.0 + MAX_PAUSE_S - 1)
        assert backend.pause_over(100.0 + MAX_PAUSE_S) and backend.free_slots == 2
        backend.prompt_accepted()
        assert backend.prompt_refused(2000.0, 2.0, "HTTP 500") == 2.0  # the doubling starts over
    finally:
        await backend.client.close()


async def test_the_health_loop_survives_a_check_that_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, health_interval_s=0.01):
        checks = 0
        second = asyncio.Event()
        original = BackendHealth.refresh

        async def flaky(self: BackendHealth) -> bool:
            nonlocal checks
            checks += 1
            if checks == 1:
                raise RuntimeError("a bug in a health check")
            second.set()
            return await original(self)

        monkeypatch.setattr(BackendHealth, "refresh", flaky)
        async with asyncio.timeout(TIMEOUT):
            await second.wait()  # the loop went on after the failure

    assert any("health check failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_backend_coming_back_up_forgets_the_prompts_it_failed_while_going_down(
    fake: FakeComfyUI,
) -> None:
    config = BackendConfig(name="gpu0", url=fake.url, timeout_s=5)
    backend = Backend(config=config, client=ComfyClient(config))
    try:
        backend.prompt_refused(100.0, 60.0, "connection refused")  # while it was going down
        assert not backend.up and backend.paused_until == 160.0
        assert await backend.refresh() is True  # the health check finds it up
        assert backend.available and backend.refusals == 0 and backend.free_slots == 2
        backend.prompt_refused(200.0, 60.0, "HTTP 500")  # up, yet failing prompts: the pause holds
        assert await backend.refresh() is False and not backend.available
    finally:
        await backend.client.close()
