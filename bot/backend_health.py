"""Backend health for the scheduler: periodic checks, refusal pauses, stale prompts, jobs taken off dead backends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bot.backends import Backend
from bot.inflight import InFlightJobs
from bot.metrics import Metrics
from bot.reasons import Failure, FailureKind
from comfy.models import ComfyError

log = logging.getLogger(__name__)


class BackendHealth:
    """Keeps the backends' up/down state fresh and cleans up after backends that went away and came back."""

    def __init__(
        self,
        *,
        backends: Sequence[Backend],
        inflight: InFlightJobs,
        metrics: Metrics,
        interval_s: float,
        grace_s: float,
        clock: Callable[[], float],
        wake: Callable[[], None],
    ) -> None:
        self.backends = list(backends)
        self.inflight = inflight
        self.metrics = metrics
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._clock = clock
        self._wake = wake
        # backend name -> prompt ids of jobs taken away from it while it was down; stopped when it is back
        self._orphans: dict[str, set[str]] = {}

    @property
    def refusal_pause_s(self) -> float:
        """First pause of a backend that failed a prompt on its side: the grace a down backend gets."""
        return max(self.interval_s, self.grace_s)

    async def run(self) -> None:
        """Check every `interval_s` until cancelled; a check that raises is logged and tried again."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("health check failed; trying again in %g s", self.interval_s)

    async def refresh(self) -> bool:
        """Health-check every backend; True when one of them came up or went down."""
        changed = await asyncio.gather(*(b.refresh(self._clock) for b in self.backends))
        for backend in self.backends:
            self.metrics.backend_health(backend.name, backend.up)
        return any(changed)

    async def check(self) -> None:
        """Refresh every backend, stop stale prompts on the ones back, end refusal pauses that are due, and
        take the jobs away from backends down longer than the grace."""
        changed = await self.refresh()
        now = self._clock()
        for backend in self.backends:
            if backend.up and self._orphans.get(backend.name):
                await self._stop_orphans(backend)
            changed = backend.pause_over(now) or changed
        if changed:
            self._wake()
        for backend in self.backends:
            if backend.up or backend.down_since is None:
                continue
            if now - backend.down_since < self.grace_s:
                continue
            for record in self.inflight.on(backend):
                if record.task is not None and record.abandoned is None:
                    # The job's task hands the job over (JobRunner) when it sees this cancellation.
                    record.abandoned = Failure(FailureKind.BACKEND_DOWN, backend.name)
                    record.task.cancel()

    def orphan(self, backend: Backend, prompt_id: str | None) -> None:
        """A job leaves `backend` while its prompt may still wait or run there: stop it once it is back."""
        if prompt_id:
            self._orphans.setdefault(backend.name, set()).add(prompt_id)

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
