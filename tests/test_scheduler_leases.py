"""Backend leases: one scheduler drives a backend at a time; another takes it over, re-attaching, never re-running."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.events import Completed, Started
from bot.jobs import JobStatus
from bot.store import JobStore
from tests.factories import imagine_job
from tests.fakes.comfy_server import FakeComfyUI
from tests.test_scheduler import TIMEOUT, Harness

LEASE_S = 0.3


@asynccontextmanager
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness, FakeComfyUI]]:
    """Schedulers A and B on one database and one ComfyUI, each with its own lease holder; A starts first."""
    fake = FakeComfyUI(step_time=0.002)
    await fake.start()
    pair = []
    for name in ("process-a", "process-b"):
        h = Harness(tmp_path, [fake], health_interval_s=0.05)
        h.settings = dataclasses.replace(h.settings, lease_holder=name, lease_s=LEASE_S, poll_s=0.05)
        await h.open()
        pair.append(h)
    a, b = pair
    try:
        yield a, b, fake
    finally:
        for h in (b, a):
            if h.scheduler._loops:
                await h.close()
            else:  # "died": its clients are still open
                await asyncio.gather(*(backend.client.close() for backend in h.scheduler.backends))
                await h.store.close()
            h._collector.cancel()
        await fake.close()


async def until_held(h: Harness, held: bool = True) -> None:
    """Wait until `h`'s scheduler holds gpu0 (or no longer does)."""
    backend = h.scheduler.backends[0]
    async with asyncio.timeout(TIMEOUT):
        await h.scheduler.leases.wait_until(lambda: backend.held is held)


async def test_only_the_lease_holder_drives_the_backend(tmp_path: Path) -> None:
    async with two_processes(tmp_path) as (a, b, fake):
        assert a.scheduler.backends[0].held and not b.scheduler.backends[0].held
        (job,) = await b.scheduler.submit([imagine_job()])  # queued through B, which holds no backend
        await a.event(Completed, job.id)
        assert (await a.store.get(job.id)).backend == "gpu0"  # type: ignore[union-attr]
        assert len(fake.received_bodies) == 1
        assert fake.received_bodies[0]["client_id"] == a.scheduler.backends[0].client.client_id


async def test_a_clean_stop_hands_the_backend_and_its_running_job_over_at_once(tmp_path: Path) -> None:
    async with two_processes(tmp_path) as (a, b, fake):
        fake.pause()
        (job,) = await a.scheduler.submit([imagine_job()])
        await a.event(Started, job.id)
        await a.scheduler.stop(grace_s=0.1)  # SIGTERM: the lease is released, the job stays running
        assert await a.status(job.id) is JobStatus.RUNNING
        await until_held(b)
        fake.resume()
        await b.event(Completed, job.id)
        assert len(fake.received_bodies) == 1  # re-attached, not posted again
        assert await b.status(job.id) is JobStatus.COMPLETED


async def test_a_dead_holder_loses_its_backend_when_the_lease_expires(tmp_path: Path) -> None:
    async with two_processes(tmp_path) as (a, b, fake):
        fake.pause()
        (job,) = await a.scheduler.submit([imagine_job()])
        await a.event(Started, job.id)
        # A dies: nothing of it runs any more, nothing is released.
        for task in [*a.scheduler._loops, *a.scheduler.inflight.tasks()]:
            task.cancel()
        await asyncio.gather(*a.scheduler._loops, return_exceptions=True)
        a.scheduler._loops = []
        assert not b.scheduler.backends[0].held
        await until_held(b)
        leases = await b.store.backend_leases()
        assert leases["gpu0"].holder == "process-b"
        fake.resume()
        await b.event(Completed, job.id)
        assert len(fake.received_bodies) == 1
        assert fake.executed_prompt_ids.count(job.prompt_id) <= 1


async def test_a_holder_that_lost_its_lease_stops_following_and_dispatching(tmp_path: Path) -> None:
    async with two_processes(tmp_path) as (a, b, fake):
        fake.pause()
        (job,) = await a.scheduler.submit([imagine_job()])
        await a.event(Started, job.id)
        # B gets the lease (as if A had been unreachable for longer than the lease).
        await b.store.release_backends("process-a")
        assert await b.store.acquire_backend("gpu0", "process-b", LEASE_S)
        record = a.scheduler.inflight.get(job.id)
        assert record is not None and record.task is not None
        await until_held(b)
        await until_held(a, held=False)
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(record.task, return_exceptions=True)  # A stops following the job
        assert a.scheduler.inflight.get(job.id) is None
        assert await a.status(job.id) is JobStatus.RUNNING  # left as it is, for B
        fake.resume()
        await b.event(Completed, job.id)
        assert len(fake.received_bodies) == 1


async def test_a_job_on_a_backend_another_process_drives_is_left_to_it_not_requeued(tmp_path: Path) -> None:
    store = await JobStore.open(str(tmp_path / "jobs.db"))
    (job,) = await store.enqueue_many([imagine_job()])
    claimed = await store.claim_next("gpu9")  # a backend only the other process has in its config
    assert claimed is not None and claimed.id == job.id
    assert await store.acquire_backend("gpu9", "process-other", 600)
    (orphan,) = await store.enqueue_many([imagine_job(user=101)])
    assert await store.claim_next("gpu8") is not None  # nobody drives gpu8: its job goes back
    await store.close()
    async with two_processes(tmp_path) as (a, _b, _fake):
        assert await a.status(job.id) is JobStatus.SUBMITTED
        await a.event(Completed, orphan.id)  # re-queued and run here
        assert (await a.store.get(job.id)).backend == "gpu9"  # type: ignore[union-attr]
