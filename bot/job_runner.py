"""One job in flight: post its prompt (or re-attach to it), follow it, save its images, write how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.backend_health import BackendHealth
from bot.backends import Backend
from bot.events import Cancelled, Completed, EventBus, Failed, Progress, Started
from bot.inflight import InFlightJob
from bot.jobs import IN_FLIGHT_STATUSES, InvalidTransition, Job, JobStatus, OutputFile
from bot.metrics import Metrics
from bot.outputs import OutputError, OutputStore
from bot.prompt_run import NoImages, PromptRun
from bot.reasons import Failure, FailureKind, JobFailure
from bot.store import Store, StoreUnavailable
from comfy import events as comfy_events
from comfy.models import BackendUnavailable, ComfyError, PromptRejected
from comfy.outcome import Outcome, OutcomeStatus
from comfy.progress import ProgressSnapshot
from comfy.render import RenderError
from comfy.workflow_template import TemplateError

log = logging.getLogger(__name__)

# Renders a claimed job's workflow for its backend (uploading the images it starts from); may raise
# JobFailure, RenderError or TemplateError.
GraphBuilder = Callable[[Backend, Job], Awaitable[dict[str, object]]]
# Puts a job back in the queue, the Failure saying why its attempt ended.
Requeue = Callable[[Job, Failure], Awaitable[None]]

# How often a job whose database went away asks whether it is back.
DATABASE_RETRY_S = 1.0

_RUNNING_SIGNS = (comfy_events.Started, comfy_events.Executing, comfy_events.Progress)


class JobRunner:
    """Takes one job through post, follow and save on its backend, and ends it in the store.

    Every end is written to SQLite before it is announced on the event bus. A job whose attempt fails for
    a reason that may pass (a backend gone, a lost prompt) goes back to the queue until it runs out of
    attempts.
    """

    def __init__(
        self,
        *,
        store: Store,
        outputs: OutputStore,
        bus: EventBus,
        metrics: Metrics,
        health: BackendHealth,
        build_graph: GraphBuilder,
        requeue: Requeue,
        job_timeout_s: float,
        max_attempts: int,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.outputs = outputs
        self.bus = bus
        self.metrics = metrics
        self.health = health
        self._build_graph = build_graph
        self._requeue = requeue
        self.job_timeout_s = job_timeout_s
        self.max_attempts = max_attempts
        self._clock = clock
        self._saves: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ the two ways in

    async def run(self, record: InFlightJob) -> None:
        """Render, post and follow a freshly claimed job."""
        try:
            await self._run(record)
        except StoreUnavailable as exc:
            await self._follow_after_outage(record, exc)

    async def resume(self, record: InFlightJob) -> None:
        """Re-attach to a job the previous run left submitted or running on `record.backend`."""
        try:
            await self._resume(record)
        except StoreUnavailable as exc:
            await self._follow_after_outage(record, exc)

    async def _run(self, record: InFlightJob) -> None:
        job, backend = record.job, record.backend
        assert job.prompt_id is not None and backend is not None
        try:
            async with asyncio.timeout(self.job_timeout_s):
                graph = await self._build_graph(backend, job)
                if record.cancel_requested:
                    await self.end_cancelled(job)
                    return
                run = PromptRun.new(backend.client, graph, job.prompt_id)
                try:
                    await run.post()
                    backend.prompt_accepted()
                    await self._follow(record, run)
                finally:
                    run.close()
        except TimeoutError:
            await self._timed_out(backend, job)
        except PromptRejected as exc:
            log.error("backend %s refused job %s: %s", backend.name, job.id, exc)
            await self.fail(job, Failure(FailureKind.REFUSED, str(exc)))
        except JobFailure as exc:
            await self.fail(job, exc.failure)
        except RenderError as exc:
            await self.fail(job, Failure(FailureKind.NOT_RENDERABLE, exc.encode()))
        except TemplateError as exc:
            await self.fail(job, Failure(FailureKind.INVALID, str(exc)))
        except BackendUnavailable as exc:
            log.warning("job %s: backend %s unavailable: %s", job.id, backend.name, exc)
            backend.prompt_refused(self._clock(), self.health.refusal_pause_s, str(exc))
            await self._retry_or_fail(record, Failure(FailureKind.BACKEND_UNAVAILABLE, backend.name))
        except asyncio.CancelledError:
            if not await self._hand_over_abandoned(record):
                raise
        except ComfyError as exc:
            log.warning("job %s on %s: %s", job.id, backend.name, exc)
            await self.fail(job, Failure(FailureKind.UNEXPECTED_ANSWER))
        except StoreUnavailable:
            raise  # not the job's fault: `run` follows it again once the database answers
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            await self.fail(job, Failure(FailureKind.BOT_ERROR))

    async def _resume(self, record: InFlightJob) -> None:
        job, backend = record.job, record.backend
        assert job.prompt_id is not None and backend is not None
        try:
            # The health check notices the backend coming back, or abandons this task (and so re-queues
            # the job) once the backend has been down for the grace.
            await backend.wait_up()
            async with asyncio.timeout(self.job_timeout_s):
                run = await PromptRun.reattach(backend.client, job.prompt_id)
                try:
                    await self._follow(record, run)
                finally:
                    run.close()
        except TimeoutError:
            await self._timed_out(backend, job)
        except BackendUnavailable as exc:
            await self._retry_or_fail(record, Failure(FailureKind.UNREACHABLE, str(exc)))
        except asyncio.CancelledError:
            if not await self._hand_over_abandoned(record):
                raise

    async def _follow_after_outage(self, record: InFlightJob, error: StoreUnavailable) -> None:
        """The database went away under the job (PostgreSQL restarting): the job stays as the database has
        it, and this task keeps its slot. Once the database answers, re-attach to its prompt as a restart
        would: a finished prompt completes from the backend's history, a running one is followed, one never
        posted goes back to the queue. (Without this the job stayed in flight with nobody following it,
        until the next restart, unless the outage also cost this process the backend's lease.)"""
        backend = record.backend
        assert backend is not None
        while True:
            log.warning(
                "job %s: the database is unreachable (%s); following it again once it answers",
                record.job_id,
                error,
            )
            try:
                await self._database_answers()
                current = await self.store.get(record.job_id)
                if (
                    current is None
                    or current.status not in IN_FLIGHT_STATUSES
                    or current.backend != backend.name
                ):
                    return  # it ended, or went back to the queue, before the database went away
                record.job = current
                await self._resume(record)
                return
            except StoreUnavailable as exc:
                error = exc

    async def _database_answers(self) -> None:
        """Return once the database answers (asking every DATABASE_RETRY_S)."""
        while True:
            try:
                await self.store.schema_version()
                return
            except StoreUnavailable:
                await asyncio.sleep(DATABASE_RETRY_S)

    # ------------------------------------------------------------------ following

    async def _follow(self, record: InFlightJob, run: PromptRun) -> None:
        job, backend = record.job, record.backend
        assert backend is not None
        if job.status is JobStatus.RUNNING:
            self._started(record)

        async def on_event(event: comfy_events.Event, snapshot: ProgressSnapshot | None) -> None:
            if not record.executing and isinstance(event, _RUNNING_SIGNS):
                await self._mark_running(job)  # written before it is announced
                self._started(record)
            if isinstance(event, comfy_events.Progress):
                self.metrics.sampler_step(backend.name)
            preview = event if isinstance(event, comfy_events.Preview) else None
            if snapshot is None and preview is None:
                return
            snap = snapshot or run.tracker.snapshot()
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

        try:
            outcome = await run.follow(on_event)
        finally:
            # The prompt stopped executing (or this bot stopped watching it): the backend's busy time ends.
            if record.executing:
                record.executing = False
                self.metrics.prompt_stopped(backend.name)
        await self._finish(record, run, outcome)

    def _started(self, record: InFlightJob) -> None:
        """The job's prompt is executing: the backend is busy, the member is told."""
        assert record.backend is not None
        record.executing = True
        self.metrics.prompt_started(record.backend.name)
        self.bus.publish(Started(record.job.id, record.job.guild_id, backend=record.backend.name))

    async def _finish(self, record: InFlightJob, run: PromptRun, outcome: Outcome) -> None:
        job = record.job
        if outcome.status is OutcomeStatus.SUCCEEDED:
            # Shielded: a cancellation (shutdown, timeout) must not lose images that already exist.
            save = asyncio.ensure_future(self._save(record, run, outcome))
            self._saves.add(save)
            save.add_done_callback(self._saves.discard)
            await asyncio.shield(save)
        elif outcome.status is OutcomeStatus.INTERRUPTED:
            if record.cancel_requested:
                await self.end_cancelled(job)
            else:
                await self.fail(job, Failure(FailureKind.INTERRUPTED))
        elif outcome.status is OutcomeStatus.LOST:
            if record.cancel_requested:
                await self.end_cancelled(job)
            else:
                await self._retry_or_fail(record, Failure(FailureKind.LOST, outcome.reason))
        else:
            error = outcome.error
            detail = f"{error.exception_type}: {error.exception_message}" if error else outcome.reason
            log.warning("job %s failed on %s: %s", job.id, run.client.backend.name, detail)
            await self.fail(job, Failure(FailureKind.EXECUTION_FAILED, _short(detail)))

    async def _save(self, record: InFlightJob, run: PromptRun, outcome: Outcome) -> None:
        job = record.job
        try:
            images = [data for _, data in await run.download(outcome)]
            saved = await self.outputs.save(job.id, images)
        except NoImages:
            await self.fail(job, Failure(FailureKind.NO_IMAGE))
            return
        except OutputError as exc:
            await self.fail(job, exc.failure)
            return
        except ComfyError as exc:
            log.warning("job %s: cannot download results from %s: %s", job.id, run.client.backend.name, exc)
            await self._retry_or_fail(record, Failure(FailureKind.DOWNLOAD_FAILED))
            return
        files = [OutputFile(str(i.path), i.width, i.height, i.size) for i in saved.images]
        try:
            await self.store.complete(job.id, files)
        except InvalidTransition as exc:
            log.info("job %s finished after it was %s; keeping its images", job.id, exc.current)
            return
        self.announce(
            Completed(
                job.id,
                job.guild_id,
                paths=tuple(str(i.path) for i in saved.images),
                grid_path=str(saved.grid) if saved.grid else None,
            )
        )

    async def wait_for_saves(self, timeout_s: float) -> None:
        """Give results being saved up to `timeout_s` to finish (at shutdown)."""
        if self._saves:
            await asyncio.wait(self._saves, timeout=timeout_s)

    # ------------------------------------------------------------------ endings

    async def _mark_running(self, job: Job) -> None:
        with contextlib.suppress(InvalidTransition):
            await self.store.mark_running(job.id)

    async def fail(self, job: Job, failure: Failure) -> None:
        """Write the job failed (unless it already ended) and announce it."""
        try:
            await self.store.fail(job.id, failure.encode())
        except InvalidTransition:
            return
        self.announce(Failed(job.id, job.guild_id, failure=failure))

    async def end_cancelled(self, job: Job) -> None:
        """Write the job cancelled (unless it already ended) and announce it."""
        try:
            await self.store.cancel(job.id)
        except InvalidTransition:
            return
        self.announce(Cancelled(job.id, job.guild_id))

    def announce(self, event: Completed | Failed | Cancelled) -> None:
        """Publish a job's end (already written to the database) and count it."""
        self.metrics.job_ended(type(event).__name__.lower())
        self.bus.publish(event)

    async def _retry_or_fail(self, record: InFlightJob, cause: Failure) -> None:
        current = await self.store.get(record.job.id)
        if current is None or current.status.is_terminal:
            return
        attempts = current.attempts + 1
        if record.cancel_requested:
            await self.end_cancelled(current)
        elif attempts >= self.max_attempts:
            failure = Failure(FailureKind.ATTEMPTS, cause.detail, attempts, cause.kind)
            await self.fail(current, failure)
        else:
            await self._requeue(current, cause)

    async def _timed_out(self, backend: Backend, job: Job) -> None:
        if job.prompt_id:
            with contextlib.suppress(ComfyError):
                await backend.client.cancel(job.prompt_id)
        await self.fail(job, Failure(FailureKind.TIMED_OUT, number=self.job_timeout_s))

    async def _hand_over_abandoned(self, record: InFlightJob) -> bool:
        """After the health check cancelled the job's task (its backend was down too long): mark its prompt
        for stopping there and re-queue (or fail) the job; False when the cancellation was something else."""
        cause = record.abandoned
        if cause is None or record.backend is None:
            return False
        self.health.orphan(record.backend, record.job.prompt_id)
        await self._retry_or_fail(record, cause)
        return True


def _short(text: str, limit: int = 180) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
