"""The jobs the scheduler follows right now: one record per job, and the slots they take on their backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from bot.backends import Backend
from bot.jobs import Job
from bot.reasons import Failure


@dataclass(eq=False, slots=True)
class InFlightJob:
    """Everything the scheduler knows about one job it follows, from claim (or restart) to its end."""

    job: Job
    backend: Backend | None  # None: the job has no backend to go back to (it is re-queued at once)
    task: asyncio.Task[None] | None = None  # the task that follows it
    cancel_requested: bool = False  # someone cancelled it while it was on its backend
    executing: bool = False  # its prompt is executing on the backend now (the GPU is busy with it)
    abandoned: Failure | None = (
        None  # why the health check cancelled its task (its backend was down too long)
    )

    @property
    def job_id(self) -> int:
        """The job's id."""
        return self.job.id


class InFlightJobs:
    """The records of the jobs in flight, by job id; the one place that fills and frees backend slots."""

    def __init__(self) -> None:
        self._records: dict[int, InFlightJob] = {}

    def add(self, record: InFlightJob) -> None:
        """Follow a job: it takes a slot on its backend until `remove`; a record it replaces frees its own."""
        replaced = self._records.get(record.job_id)
        if replaced is not None and replaced.backend is not None:
            replaced.backend.jobs.discard(record.job_id)
        self._records[record.job_id] = record
        if record.backend is not None:
            record.backend.jobs.add(record.job_id)

    def remove(self, record: InFlightJob) -> bool:
        """Stop following a job and free its slot; False when `record` was already replaced or removed."""
        if self._records.get(record.job_id) is not record:
            return False
        del self._records[record.job_id]
        if record.backend is not None:
            record.backend.jobs.discard(record.job_id)
        return True

    def get(self, job_id: int) -> InFlightJob | None:
        """The record of a job in flight, or None."""
        return self._records.get(job_id)

    def on(self, backend: Backend) -> list[InFlightJob]:
        """The records of the jobs that take a slot on `backend`."""
        return [r for r in self._records.values() if r.backend is backend]

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks following jobs."""
        return [r.task for r in self._records.values() if r.task is not None]

    def __iter__(self) -> Iterator[InFlightJob]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)
