"""The scheduler: claims jobs fairly from the store and keeps every ComfyUI backend busy.

Each backend holds up to `max_running + prefetch` jobs: while one runs, the next prompt already waits in
ComfyUI's own queue, so the GPU starts it the moment the first ends. Downloading, saving and announcing a
result happen in the job's own task, off the dispatch path. Every state change is written to SQLite before
it is announced, and a restart reconciles jobs left submitted or running with their backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.backends import Backend
from bot.events import Cancelled, Completed, EventBus, Failed, Progress, Queued, Started, Waiting
from bot.jobs import EnqueueLimits, ImagePrompt, InvalidTransition, Job, JobStatus, NewJob, OutputFile
from bot.metrics import Metrics
from bot.outputs import OutputError, OutputStore
from bot.store import JobStore
from comfy import events as comfy_events
from comfy.client import PromptWatch
from comfy.events import Outcome, OutcomeStatus, ProgressTracker
from comfy.models import BackendUnavailable, ComfyError, PromptRejected
from comfy.params import request_from_json
from comfy.profiles import ModelProfile
from comfy.render import RenderError, SourceImage, kind_for, template_values
from comfy.workflow import TemplateError, TemplateRegistry

log = logging.getLogger(__name__)

POSTED_AT_KEPT = 4096

# Where attached images (a job's `image_prompt`) are kept, under the output folder; each is uploaded to
# ComfyUI when its job runs.
IMAGE_PROMPT_DIR = "image_prompts"


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Knobs from `[scheduler]` (and the models the scheduler can route)."""

    models: Sequence[ModelProfile]
    job_timeout_s: float = 900.0
    health_interval_s: float = 5.0
    backend_grace_s: float = 60.0
    max_attempts: int = 3


class Scheduler:
    """Dispatches queued jobs to backends and follows them to the end."""

    def __init__(
        self,
        *,
        store: JobStore,
        backends: Sequence[Backend],
        templates: TemplateRegistry,
        outputs: OutputStore,
        bus: EventBus,
        settings: SchedulerSettings,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.backends = list(backends)
        self.templates = templates
        self.outputs = outputs
        self.bus = bus
        self.settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._saves: set[asyncio.Task[object]] = set()
        self._cancel_requested: set[int] = set()
        self._executing: set[int] = set()  # jobs whose prompt is executing on its backend now
        self._abandoned: dict[int, str] = {}
        # backend name -> prompt ids of jobs taken away from it while it was down; stopped when it is back
        self._orphans: dict[str, set[str]] = {}
        self._positions: dict[int, dict[int, int]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._models = {m.name.lower(): m for m in settings.models}
        self.metrics = metrics if metrics is not None else Metrics()
        for backend in self.backends:
            self.metrics.add_backend(backend.name)
        # prompt id -> wall-clock time it was posted to ComfyUI, the newest few thousand (for benchmarks,
        # which compare it with ComfyUI's own execution timestamps).
        self.posted_at: OrderedDict[str, float] = OrderedDict()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check the backends, reconcile jobs left in flight by the last run, start dispatching."""
        await self._refresh_backends()
        for job in await self.store.list_in_flight():
            self._spawn(job, self._resume(job))
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="scheduler-dispatch"),
            asyncio.create_task(self._health_loop(), name="scheduler-health"),
        ]
        self.wake()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give finished results `grace_s` to be saved; hand the rest to the next start.

        Jobs still submitted or running stay so in the database: the next start re-attaches to them.
        """
        self._stopping = True
        self._wake.set()
        for task in self._loops:
            task.cancel()
        if self._saves:
            await asyncio.wait(self._saves, timeout=grace_s)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks.values(), return_exceptions=True)
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
        if not any(b.available for b in self.backends):
            for job in created:
                self.bus.publish(Waiting(job.id, job.guild_id, reason=self.waiting_reason()))
        self.wake()
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
            self._announce(Cancelled(job.id, job.guild_id))
            await self._publish_positions(job.guild_id)
            return previous
        self._cancel_requested.add(job_id)
        backend = self._backend(job.backend)
        if backend is not None and job.prompt_id:
            try:
                await backend.client.cancel(job.prompt_id)
            except ComfyError as exc:
                log.warning("cancel of job %s on %s: %s", job_id, backend.name, exc)
        if job_id not in self._tasks:
            # Nobody follows it (its backend is gone or it never got posted): end it here.
            await self._end_cancelled(job)
        return job.status

    def waiting_reason(self) -> str:
        """Why queued jobs are not moving, when no backend is up."""
        return "No image server is reachable right now; your job will start when one is back."

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
                await self._wake.wait()

    async def _dispatch_once(self) -> bool:
        """Fill free slots, least busy backend first; True when at least one job was claimed."""
        claimed_any = False
        while not self._stopping:
            candidates = sorted((b for b in self.backends if b.free_slots > 0), key=lambda b: b.load)
            progress = False
            for backend in candidates:
                models = backend.runnable_models(self.settings.models)
                if models is not None and not models:
                    continue
                job = await self.store.claim_next(backend.name, models)
                if job is None:
                    continue
                backend.jobs.add(job.id)
                self._spawn(job, self._run(backend, job))
                await self._publish_positions(job.guild_id)
                progress = claimed_any = True
                break  # re-sort: loads changed
            if not progress:
                return claimed_any
        return claimed_any

    def _spawn(self, job: Job, coro: object) -> None:
        task = asyncio.create_task(coro, name=f"job-{job.id}")  # type: ignore[arg-type]
        self._tasks[job.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(job.id, None)
            for backend in self.backends:
                if job.id in backend.jobs:
                    backend.jobs.discard(job.id)
                    self.wake()

        task.add_done_callback(done)

    # ------------------------------------------------------------------ one job

    async def _run(self, backend: Backend, job: Job) -> None:
        """Render, post and follow a freshly claimed job."""
        assert job.prompt_id is not None
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                graph = await self._build_graph(backend, job)
                if job.id in self._cancel_requested:
                    await self._end_cancelled(job)
                    return
                watch = backend.client.watch(job.prompt_id)
                try:
                    await backend.client.queue_prompt(graph, job.prompt_id)
                    backend.prompt_accepted()
                    self.posted_at[job.prompt_id] = time.time()
                    if len(self.posted_at) > POSTED_AT_KEPT:
                        self.posted_at.popitem(last=False)
                    await self._follow(backend, job, watch, ProgressTracker.from_graph(graph))
                finally:
                    watch.close()
        except TimeoutError:
            await self._timed_out(backend, job)
        except PromptRejected as exc:
            log.error("backend %s refused job %s: %s", backend.name, job.id, exc)
            await self._fail(job, f"The image server refused this job: {exc}")
        except (RenderError, TemplateError) as exc:
            await self._fail(job, str(exc))
        except BackendUnavailable as exc:
            log.warning("job %s: backend %s unavailable: %s", job.id, backend.name, exc)
            backend.prompt_refused(self._clock(), self._refusal_pause_s, str(exc))
            await self._retry_or_fail(job, f"backend {backend.name} unavailable")
        except asyncio.CancelledError:
            if not await self._hand_over_abandoned(backend, job):
                raise
        except ComfyError as exc:
            log.warning("job %s on %s: %s", job.id, backend.name, exc)
            await self._fail(job, "The image server answered something unexpected; an admin can see the log.")
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, "Something went wrong in the bot; an admin can see the log.")

    async def _resume(self, job: Job) -> None:
        """Re-attach to a job the previous run left submitted or running."""
        backend = self._backend(job.backend)
        if backend is None or job.prompt_id is None:
            await self._requeue(
                job, "its backend is no longer configured" if backend is None else "never posted"
            )
            return
        backend.jobs.add(job.id)
        try:
            # The health loop notices the backend coming back, or abandons this task (and so re-queues
            # the job) once the backend has been down for backend_grace_s.
            await backend.wait_up()
            async with asyncio.timeout(self.settings.job_timeout_s):
                watch = await backend.client.reattach(job.prompt_id)
                try:
                    await self._follow(backend, job, watch, ProgressTracker())
                finally:
                    watch.close()
        except TimeoutError:
            await self._timed_out(backend, job)
        except BackendUnavailable as exc:
            await self._retry_or_fail(job, str(exc))
        except asyncio.CancelledError:
            if not await self._hand_over_abandoned(backend, job):
                raise

    async def _follow(self, backend: Backend, job: Job, watch: PromptWatch, tracker: ProgressTracker) -> None:
        try:
            await self._watch(backend, job, watch, tracker)
        finally:
            # The prompt stopped executing (or this bot stopped watching it): the backend's busy time ends.
            if job.id in self._executing:
                self._executing.discard(job.id)
                self.metrics.prompt_stopped(backend.name)
        outcome = await watch.result()
        await self._finish(backend, job, outcome)

    async def _watch(self, backend: Backend, job: Job, watch: PromptWatch, tracker: ProgressTracker) -> None:
        """Follow the prompt's events until it ends: mark the job running, publish its progress."""
        if job.status is JobStatus.RUNNING:
            self._started(backend, job)
        async for event in watch:
            if job.id not in self._executing and isinstance(
                event, comfy_events.Started | comfy_events.Executing | comfy_events.Progress
            ):
                await self._mark_running(job)  # written before it is announced
                self._started(backend, job)
            if isinstance(event, comfy_events.Progress):
                self.metrics.sampler_step(backend.name)
            snapshot = tracker.update(event)
            preview = event if isinstance(event, comfy_events.Preview) else None
            if snapshot is not None or preview is not None:
                snap = snapshot or tracker.snapshot()
                self.bus.publish(
                    Progress(
                        job.id,
                        job.guild_id,
                        fraction=snap.fraction,
                        step=snap.step,
                        total=snap.total_steps,
                        eta_s=snap.eta_s,
                        preview=preview.image if preview else None,
                        preview_mime=preview.mime if preview else None,
                    )
                )
                if snapshot is not None:
                    await self.store.update_progress(job.id, snap.fraction)

    def _started(self, backend: Backend, job: Job) -> None:
        """The job's prompt is executing: the backend is busy, the member is told."""
        self._executing.add(job.id)
        self.metrics.prompt_started(backend.name)
        self.bus.publish(Started(job.id, job.guild_id, backend=backend.name))

    async def _finish(self, backend: Backend, job: Job, outcome: Outcome) -> None:
        if outcome.status is OutcomeStatus.SUCCEEDED:
            # Shielded: a cancellation (shutdown, timeout) must not lose images that already exist.
            save = asyncio.ensure_future(self._save(backend, job, outcome))
            self._saves.add(save)
            save.add_done_callback(self._saves.discard)
            await asyncio.shield(save)
        elif outcome.status is OutcomeStatus.INTERRUPTED:
            if job.id in self._cancel_requested:
                await self._end_cancelled(job)
            else:
                await self._fail(job, "The job was stopped on the image server.")
        elif outcome.status is OutcomeStatus.LOST:
            if job.id in self._cancel_requested:
                await self._end_cancelled(job)
            else:
                await self._retry_or_fail(job, outcome.reason or "the image server lost the job")
        else:
            error = outcome.error
            detail = f"{error.exception_type}: {error.exception_message}" if error else outcome.reason
            log.warning("job %s failed on %s: %s", job.id, backend.name, detail)
            await self._fail(job, f"The image server could not make this image ({_short(detail)}).")

    async def _save(self, backend: Backend, job: Job, outcome: Outcome) -> None:
        refs = [ref for ref in outcome.images if ref.type == "output"] or list(outcome.images)
        if not refs:
            await self._fail(job, "The image server finished without producing an image.")
            return
        try:
            images = [await backend.client.download_image(ref) for ref in refs]
            saved = await self.outputs.save(job.id, images)
        except OutputError as exc:
            await self._fail(job, f"The image was made but {exc}.")
            return
        except ComfyError as exc:
            log.warning("job %s: cannot download results from %s: %s", job.id, backend.name, exc)
            await self._retry_or_fail(job, "its images could not be downloaded")
            return
        files = [OutputFile(str(i.path), i.width, i.height, i.size) for i in saved.images]
        try:
            await self.store.complete(job.id, files)
        except InvalidTransition as exc:
            log.info("job %s finished after it was %s; keeping its images", job.id, exc.current)
            return
        self._cancel_requested.discard(job.id)
        self._announce(
            Completed(
                job.id,
                job.guild_id,
                paths=tuple(str(i.path) for i in saved.images),
                grid_path=str(saved.grid) if saved.grid else None,
            )
        )

    async def _build_graph(self, backend: Backend, job: Job) -> dict[str, object]:
        request = request_from_json(job.request_json)
        model = self._models.get(request.model.lower()) or self.settings.models[0]
        source = None
        if job.parent_job_id is not None:
            source = await self._upload_parent(backend, job)
        elif job.image_prompt is not None:
            source = await self._upload_image_prompt(backend, job.image_prompt)
        kind = kind_for(job.action, has_image=source is not None)
        template = self.templates.for_model(model, kind)
        values = template_values(
            request, filename_prefix=f"comfy-imagine/job_{job.id}", action=job.action, source=source
        )
        return template.render(values)

    async def _upload_parent(self, backend: Backend, job: Job) -> SourceImage:
        outputs = await self.store.outputs(job.parent_job_id or 0)
        index = job.parent_index or 0
        match = next((o for o in outputs if o.idx == index), None)
        if match is None:
            raise RenderError("the image this job starts from no longer exists")
        try:
            data = await asyncio.to_thread(_read_file, match.path)
        except OSError:
            raise RenderError("the image this job starts from was deleted from the bot's disk") from None
        uploaded = await backend.client.upload_image(data, f"imagine_{job.parent_job_id}_{index}.png")
        return SourceImage(uploaded.load_image_name, match.width, match.height)

    async def _upload_image_prompt(self, backend: Backend, image_prompt: ImagePrompt) -> SourceImage:
        file = image_prompt.file
        path = (self.outputs.root / file).resolve()
        if not file or self.outputs.root.resolve() not in path.parents:
            raise RenderError("the attached image of this job is missing")
        try:
            data = await asyncio.to_thread(_read_file, str(path))
        except OSError:
            raise RenderError("the attached image was deleted from the bot's disk") from None
        uploaded = await backend.client.upload_image(data, f"imagine_prompt_{path.name}")
        return SourceImage(uploaded.load_image_name, image_prompt.width, image_prompt.height)

    # ------------------------------------------------------------------ endings

    async def _mark_running(self, job: Job) -> None:
        with contextlib.suppress(InvalidTransition):
            await self.store.mark_running(job.id)

    async def _fail(self, job: Job, reason: str) -> None:
        try:
            await self.store.fail(job.id, reason)
        except InvalidTransition:
            return
        self._cancel_requested.discard(job.id)
        self._announce(Failed(job.id, job.guild_id, reason=reason))

    async def _end_cancelled(self, job: Job) -> None:
        self._cancel_requested.discard(job.id)
        try:
            await self.store.cancel(job.id)
        except InvalidTransition:
            return
        self._announce(Cancelled(job.id, job.guild_id))

    def _announce(self, event: Completed | Failed | Cancelled) -> None:
        """Publish a job's end (already written to the database) and count it."""
        self.metrics.job_ended(type(event).__name__.lower())
        self.bus.publish(event)

    async def _requeue(self, job: Job, reason: str) -> None:
        log.info("job %s goes back to the queue: %s", job.id, reason)
        with contextlib.suppress(InvalidTransition):
            await self.store.requeue(job.id, reason)
            await self._publish_positions(job.guild_id)
            if not any(b.available for b in self.backends):
                self.bus.publish(Waiting(job.id, job.guild_id, reason=self.waiting_reason()))
        self.wake()

    async def _retry_or_fail(self, job: Job, reason: str) -> None:
        current = await self.store.get(job.id)
        if current is None or current.status.is_terminal:
            return
        if current.id in self._cancel_requested:
            await self._end_cancelled(current)
        elif current.attempts + 1 >= self.settings.max_attempts:
            await self._fail(current, f"The job failed {current.attempts + 1} times ({reason}).")
        else:
            await self._requeue(current, reason)

    async def _timed_out(self, backend: Backend, job: Job) -> None:
        if job.prompt_id:
            with contextlib.suppress(ComfyError):
                await backend.client.cancel(job.prompt_id)
        minutes = self.settings.job_timeout_s / 60
        await self._fail(job, f"The job took longer than {minutes:g} minutes and was stopped.")

    # ------------------------------------------------------------------ health and positions

    @property
    def _refusal_pause_s(self) -> float:
        """First pause of a backend that failed a prompt on its side: the grace a down backend gets."""
        return max(self.settings.health_interval_s, self.settings.backend_grace_s)

    async def _hand_over_abandoned(self, backend: Backend, job: Job) -> bool:
        """After the health loop cancelled the job's task (its backend was down too long): mark its prompt
        for stopping there and re-queue (or fail) the job; False when the cancellation was something else."""
        reason = self._abandoned.pop(job.id, None)
        if reason is None:
            return False
        self._orphan(backend, job)
        await self._retry_or_fail(job, reason)
        return True

    def _orphan(self, backend: Backend, job: Job) -> None:
        """The job leaves `backend` while its prompt may still wait or run there: stop it once it is back."""
        if job.prompt_id:
            self._orphans.setdefault(backend.name, set()).add(job.prompt_id)

    async def _stop_orphans(self, backend: Backend) -> None:
        """Delete (or interrupt) prompts of jobs that moved on while `backend` was down, so none runs twice."""
        orphans = self._orphans.get(backend.name, set())
        for prompt_id in list(orphans):
            try:
                await backend.client.cancel(prompt_id)
            except ComfyError as exc:
                log.warning("cannot stop stale prompt %s on %s yet: %s", prompt_id, backend.name, exc)
                return
            orphans.discard(prompt_id)
            log.info(
                "stopped prompt %s on %s: its job moved on while the backend was down",
                prompt_id,
                backend.name,
            )

    async def _health_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.health_interval_s)
            try:
                await self._check_health()
            except Exception:
                log.exception("health check failed; trying again in %g s", self.settings.health_interval_s)

    async def _check_health(self) -> None:
        """Refresh every backend, stop stale prompts on the ones back, end refusal pauses that are due, and
        take the jobs away from backends down longer than the grace."""
        changed = await self._refresh_backends()
        now = self._clock()
        for backend in self.backends:
            if backend.up and self._orphans.get(backend.name):
                await self._stop_orphans(backend)
            changed = backend.pause_over(now) or changed
        if changed:
            self.wake()
        for backend in self.backends:
            if backend.up or backend.down_since is None:
                continue
            if now - backend.down_since < self.settings.backend_grace_s:
                continue
            for job_id in list(backend.jobs):
                task = self._tasks.get(job_id)
                if task is not None and job_id not in self._abandoned:
                    self._abandoned[job_id] = f"backend {backend.name} was down too long"
                    task.cancel()

    async def _refresh_backends(self) -> bool:
        """Health-check every backend; True when one of them came up or went down."""
        changed = await asyncio.gather(*(b.refresh(self._clock) for b in self.backends))
        for backend in self.backends:
            self.metrics.backend_health(backend.name, backend.up)
        return any(changed)

    async def _publish_positions(self, guild_id: int) -> None:
        positions = await self.store.positions(guild_id)
        known = self._positions.setdefault(guild_id, {})
        for job_id, position in positions.items():
            if known.get(job_id) != position:
                self.bus.publish(Queued(job_id, guild_id, position=position))
        self._positions[guild_id] = dict(positions)

    def _backend(self, name: str | None) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _short(text: str, limit: int = 180) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
