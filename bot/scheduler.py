"""The scheduler: claims jobs fairly from the store and keeps every ComfyUI backend busy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from bot.backend_health import BackendHealth
from bot.backend_leases import LeaseKeeper
from bot.backends import Backend
from bot.events import Cancelled, EventBus, Queued, Waiting
from bot.image_storage import check_key
from bot.inflight import InFlightJob, InFlightJobs
from bot.job_runner import JobRunner
from bot.jobs import EnqueueLimits, ImagePrompt, InvalidTransition, Job, JobStatus, NewJob
from bot.metrics import Metrics
from bot.outputs import OutputStore
from bot.reasons import Failure, FailureKind, JobFailure, WaitReason
from bot.store import Store
from comfy.models import ComfyError
from comfy.params import request_from_json
from comfy.profiles import ModelProfile
from comfy.render import SourceImage, blend_template_values, kind_for, template_values
from comfy.workflow import TemplateRegistry

log = logging.getLogger(__name__)

# Where attached images (a job's `image_prompt`, a blend's `blend_images`) are kept, under the output folder;
# each is uploaded to ComfyUI when its job runs.
IMAGE_PROMPT_DIR = "image_prompts"


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Knobs from `[scheduler]` (and the models the scheduler can route)."""

    models: Sequence[ModelProfile]
    job_timeout_s: float = 900.0
    health_interval_s: float = 5.0
    backend_grace_s: float = 60.0
    max_attempts: int = 3
    lease_s: float = 15.0
    # Who holds this process's backend leases; one stable name with SQLite (one process per file), a
    # name per process with PostgreSQL.
    lease_holder: str = "local"
    # Also look for work this often without being woken (jobs queued by other processes); None: only when woken.
    poll_s: float | None = None


class Scheduler:
    """Dispatches queued jobs to backends; a JobRunner follows each one to its end.

    Each backend holds up to `max_running + prefetch` jobs: while one runs, the next prompt already waits
    in ComfyUI's own queue, so the GPU starts it the moment the first ends. Downloading, saving and
    announcing a result happen in the job's own task, off the dispatch path. Every state change is written
    to SQLite before it is announced, and a restart reconciles jobs left submitted or running with their
    backend.
    """

    def __init__(
        self,
        *,
        store: Store,
        backends: Sequence[Backend],
        templates: TemplateRegistry,
        outputs: OutputStore,
        bus: EventBus,
        settings: SchedulerSettings,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        announce_work: Callable[[], None] = lambda: None,
    ) -> None:
        """`announce_work` tells other processes sharing the database that jobs were queued."""
        self.store = store
        self.backends = list(backends)
        self.templates = templates
        self.outputs = outputs
        self.bus = bus
        self.settings = settings
        self._wake = asyncio.Event()
        self._stopping = False
        self.inflight = InFlightJobs()
        self._positions: dict[int, dict[int, int]] = {}  # guild id -> job id -> position last announced
        self._loops: list[asyncio.Task[None]] = []
        self._models = {m.name.lower(): m for m in settings.models}
        self.metrics = metrics if metrics is not None else Metrics()
        for backend in self.backends:
            self.metrics.add_backend(backend.name)
        self.health = BackendHealth(
            backends=self.backends,
            inflight=self.inflight,
            metrics=self.metrics,
            interval_s=settings.health_interval_s,
            grace_s=settings.backend_grace_s,
            clock=clock,
            wake=self.wake,
        )
        self.runner = JobRunner(
            store=store,
            outputs=outputs,
            bus=bus,
            metrics=self.metrics,
            health=self.health,
            build_graph=self._build_graph,
            requeue=self._requeue,
            job_timeout_s=settings.job_timeout_s,
            max_attempts=settings.max_attempts,
            clock=clock,
        )
        self.leases = LeaseKeeper(
            store=store,
            backends=self.backends,
            holder=settings.lease_holder,
            lease_s=settings.lease_s,
            on_gained=self._resume_backend,
            on_lost=self._let_go,
        )
        self._announce_work = announce_work
        self._disconnects: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check the backends, take their leases (re-attaching to the jobs left on them), start dispatching."""
        await self.health.refresh()
        leases = await self.store.backend_leases()
        for job in await self.store.list_in_flight():
            backend = self._backend(job.backend)
            if backend is None and job.backend in leases and leases[job.backend].expires_at > time.time():
                # Not in this process's config, but another process drives it (a rolling upgrade that
                # adds or removes a backend): its holder follows the job; re-queueing it would run it twice.
                continue
            if backend is None or job.prompt_id is None:
                kind = FailureKind.BACKEND_GONE if backend is None else FailureKind.NEVER_POSTED
                self._spawn(InFlightJob(job, None), self._requeue(job, Failure(kind)))
        await self.leases.renew()
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="scheduler-dispatch"),
            asyncio.create_task(self.health.run(), name="scheduler-health"),
            asyncio.create_task(self.leases.run(), name="scheduler-leases"),
        ]
        self.wake()

    async def _resume_backend(self, backend: Backend) -> None:
        """This process now drives `backend`: re-attach to the jobs left on it (by a restart or a dead
        process), as they are: finished ones complete from its history, running ones are followed."""
        if backend.up:
            try:
                await backend.client.connect()
            except ComfyError as exc:
                log.warning("backend %s: %s (the health check tries again)", backend.name, exc)
        for job in await self.store.list_in_flight():
            if (
                job.backend == backend.name
                and job.prompt_id is not None
                and self.inflight.get(job.id) is None
            ):
                record = InFlightJob(job, backend)
                self._spawn(record, self.runner.resume(record))
        self.wake()

    def _let_go(self, backend: Backend) -> None:
        """Another process drives `backend` now: stop following its jobs here, leaving them as they are."""
        for record in self.inflight.on(backend):
            if record.task is not None:
                record.task.cancel()
        task = asyncio.create_task(backend.client.disconnect(), name=f"disconnect-{backend.name}")
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give finished results `grace_s` to be saved; hand the rest to the next start.

        Jobs still submitted or running stay so in the database: the next start re-attaches to them.
        """
        self._stopping = True
        self._wake.set()
        for task in self._loops:
            task.cancel()
        await self.runner.wait_for_saves(grace_s)
        tasks = self.inflight.tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*self._loops, *tasks, return_exceptions=True)
        await self.leases.release()
        await asyncio.gather(*(b.client.close() for b in self.backends), return_exceptions=True)

    def wake(self) -> None:
        """Ask the dispatcher to look for work (new jobs, a free slot, a backend back up)."""
        self._wake.set()

    # ------------------------------------------------------------------ public operations

    async def submit(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Queue jobs (limits checked atomically by the store), announce their positions, dispatch."""
        created = await self.store.enqueue_many(jobs, limits)
        for guild_id in {job.guild_id for job in created}:
            await self._publish_positions(guild_id)
        for job in created:
            self._publish_waiting(job)
        self.wake()
        self._announce_work()
        return created

    async def cancel(self, job_id: int) -> JobStatus | None:
        """Cancel a job wherever it is; returns its status before, or None when it had already ended."""
        job = await self.store.get(job_id)
        if job is None or job.status.is_terminal:
            return None
        if job.status is JobStatus.QUEUED:
            try:
                previous = await self.store.cancel(job_id)
            except InvalidTransition:
                return await self.cancel(job_id)  # claimed meanwhile: cancel it on its backend
            self.runner.announce(Cancelled(job.id, job.guild_id))
            await self._publish_positions(job.guild_id)
            return previous
        record = self.inflight.get(job_id)
        if record is None:
            # Nobody follows it yet: a claim finishing meanwhile takes the request over (see _spawn).
            record = InFlightJob(job, None)
            self.inflight.add(record)
        record.cancel_requested = True
        backend = self._backend(job.backend)
        if backend is not None and job.prompt_id:
            try:
                await backend.client.cancel(job.prompt_id)
            except ComfyError as exc:
                log.warning("cancel of job %s on %s: %s", job_id, backend.name, exc)
        if record.task is None and self.inflight.remove(record):
            # Still nobody follows it (its backend is gone or it never got posted): end it here.
            await self.runner.end_cancelled(job)
        return job.status

    def backend_status(self) -> list[Backend]:
        """The backends, for /status."""
        return list(self.backends)

    # ------------------------------------------------------------------ dispatch

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self._dispatch_once()
            except Exception:
                log.exception("dispatch failed; retrying")
                claimed = False
                await asyncio.sleep(1)
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_s):
                        await self._wake.wait()

    async def _dispatch_once(self) -> bool:
        """Fill free slots, least busy backend first; True when at least one job was claimed."""
        claimed_any = False
        while not self._stopping:
            candidates = sorted(
                (b for b in self.backends if b.held and b.free_slots > 0), key=lambda b: b.load
            )
            progress = False
            for backend in candidates:
                models = backend.runnable_models(self.settings.models)
                if models is not None and not models:
                    continue
                job = await self.store.claim_next(backend.name, models)
                if job is None:
                    continue
                record = InFlightJob(job, backend)
                self._spawn(record, self.runner.run(record))
                await self._publish_positions(job.guild_id)
                progress = claimed_any = True
                break  # re-sort: loads changed
            if not progress:
                return claimed_any
        return claimed_any

    def _spawn(self, record: InFlightJob, follow: Coroutine[Any, Any, None]) -> None:
        """Run `follow` (the job's way to its end) in a task; the record and its slot live as long as it."""
        waiting = self.inflight.get(record.job_id)
        if waiting is not None and waiting.task is None:
            record.cancel_requested = waiting.cancel_requested  # cancelled while it was being claimed
        record.task = asyncio.create_task(follow, name=f"job-{record.job_id}")
        self.inflight.add(record)

        def done(_: asyncio.Task[None]) -> None:
            if self.inflight.remove(record) and record.backend is not None:
                self.wake()

        record.task.add_done_callback(done)

    async def _requeue(self, job: Job, cause: Failure) -> None:
        """Put a job back in the queue (one more attempt), `cause` kept in its `error` column."""
        log.info("job %s goes back to the queue: %s", job.id, cause)
        with contextlib.suppress(InvalidTransition):
            await self.store.requeue(job.id, cause.encode())
            await self._publish_positions(job.guild_id)
            self._publish_waiting(job)
        self.wake()

    def _publish_waiting(self, job: Job) -> None:
        """Tell the job's member it waits for a backend, when none takes jobs."""
        if not any(b.available for b in self.backends):
            self.bus.publish(Waiting(job.id, job.guild_id, reason=WaitReason.NO_BACKEND))

    async def _publish_positions(self, guild_id: int) -> None:
        positions = await self.store.positions(guild_id)
        known = self._positions.setdefault(guild_id, {})
        for job_id, position in positions.items():
            if known.get(job_id) != position:
                self.bus.publish(Queued(job_id, guild_id, position=position))
        self._positions[guild_id] = dict(positions)

    def _backend(self, name: str | None) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    # ------------------------------------------------------------------ the workflow of a job

    async def _build_graph(self, backend: Backend, job: Job) -> dict[str, object]:
        request = request_from_json(job.request_json)
        model = self._models.get(request.model.lower()) or self.settings.models[0]
        prefix = f"comfy-imagine/job_{job.id}"
        source = None
        if job.parent_job_id is not None:
            source = await self._upload_parent(backend, job)
        elif job.blend_images:
            names = [(await self._upload_image_prompt(backend, image)).name for image in job.blend_images]
            values = blend_template_values(request, filename_prefix=prefix, images=names)
            return self.templates.for_model(model, "blend").render(values)
        elif job.image_prompt is not None:
            source = await self._upload_image_prompt(backend, job.image_prompt)
        kind = kind_for(job.action, has_image=source is not None)
        template = self.templates.for_model(model, kind)
        values = template_values(request, filename_prefix=prefix, action=job.action, source=source)
        return template.render(values)

    async def _upload_parent(self, backend: Backend, job: Job) -> SourceImage:
        outputs = await self.store.outputs(job.parent_job_id or 0)
        index = job.parent_index or 0
        match = next((o for o in outputs if o.idx == index), None)
        if match is None:
            raise JobFailure(Failure(FailureKind.PARENT_MISSING))
        try:
            data = await self.outputs.read(match.path)
        except (OSError, ValueError):
            raise JobFailure(Failure(FailureKind.PARENT_DELETED)) from None
        uploaded = await backend.client.upload_image(data, f"imagine_{job.parent_job_id}_{index}.png")
        return SourceImage(uploaded.load_image_name, match.width, match.height)

    async def _upload_image_prompt(self, backend: Backend, image_prompt: ImagePrompt) -> SourceImage:
        file = image_prompt.file
        try:
            key = check_key(file)
        except ValueError:  # not a key this bot writes: never read outside the storage
            raise JobFailure(Failure(FailureKind.IMAGE_PROMPT_MISSING)) from None
        try:
            data = await self.outputs.read(self.outputs.ref(key))
        except OSError:
            raise JobFailure(Failure(FailureKind.IMAGE_PROMPT_DELETED)) from None
        uploaded = await backend.client.upload_image(data, f"imagine_prompt_{key.rsplit('/', 1)[-1]}")
        return SourceImage(uploaded.load_image_name, image_prompt.width, image_prompt.height)
