"""Helpers shared by the store tests: a hand-moved clock, job factories and walking a job to a status."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from bot.jobs import EnqueueLimits, Job, JobKind, JobStatus, NewJob, OutputFile
from bot.store import Store

GUILD_A, GUILD_B, GUILD_C = 1001, 1002, 1003


class FakeClock:
    """A clock the test moves by hand; every reading is unique unless `frozen`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.frozen = False

    def __call__(self) -> float:
        if not self.frozen:
            self.now += 0.001
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_job(
    guild: int = GUILD_A,
    user: int = 1,
    prompt: str = "a lighthouse",
    kind: JobKind = JobKind.IMAGINE,
    **kw: object,
) -> NewJob:
    return NewJob(guild_id=guild, channel_id=guild * 10, user_id=user, kind=kind, prompt=prompt, **kw)  # type: ignore[arg-type]


async def enqueue(store: Store, job: NewJob, limits: EnqueueLimits | None = None) -> Job:
    """Enqueue one job as its own command."""
    (created,) = await store.enqueue_many([job], limits)
    return created


async def claim_all(store: Store, backend: str = "gpu0") -> list[Job]:
    claimed = []
    while (job := await store.claim_next(backend)) is not None:
        claimed.append(job)
    return claimed


async def drive_to(store: Store, status: JobStatus, **kw: object) -> Job:
    """Make one job and walk it to `status` through the public API.

    With a `model`, the claim is restricted to it, so other waiting jobs that have a different
    model stay where they are.
    """
    job = await enqueue(store, new_job(**kw))  # type: ignore[arg-type]
    if status is JobStatus.FAILED:
        return await store.fail(job.id, "bad prompt")
    if status is JobStatus.CANCELLED:
        await store.cancel(job.id)
        return await store.get(job.id)  # type: ignore[return-value]
    if status is JobStatus.QUEUED:
        return job
    claimed = await store.claim_next("gpu0", {job.model} if job.model else None)
    assert claimed is not None and claimed.id == job.id
    if status is JobStatus.SUBMITTED:
        return claimed
    running = await store.mark_running(job.id)
    if status is JobStatus.RUNNING:
        return running
    return await store.complete(job.id, [OutputFile(f"out/{job.id}.png", 64, 64, 10)])


@contextlib.contextmanager
def raw(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, as another process (or an operator with the CLI) would have."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        yield conn
    finally:
        conn.close()
