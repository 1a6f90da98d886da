"""What a job store engine promises: the `Store` protocol every database implementation follows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Final, Protocol, Self

from bot.jobs import (
    EnqueueLimits,
    GuildStats,
    Job,
    JobOutput,
    JobStatus,
    NewJob,
    OutputFile,
    QueueSnapshot,
    UserSettings,
)

# The per-minute limit counts a member's commands in this sliding window.
RATE_WINDOW_S: Final = 60.0
# update_progress may skip writes that move the stored progress by less than this.
PROGRESS_WRITE_STEP: Final = 0.05


class Unset(Enum):
    """The type of `UNSET`: "leave this setting as it is", as opposed to None ("clear it")."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


def new_prompt_id() -> str:
    """A fresh ComfyUI prompt id (a random UUID), the default of `Store.claim_next`."""
    return str(uuid.uuid4())


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the bot than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database schema is version {found}, but this version of the bot only knows up to "
            f"{known}; run the newer bot again or restore a backup taken before the upgrade"
        )
        self.found = found
        self.known = known


@dataclass(frozen=True, slots=True)
class BackendLease:
    """Who drives a backend, and until when (unix seconds) unless they renew."""

    backend: str
    holder: str
    expires_at: float


class Store(Protocol):
    """The bot's persistent state: jobs and their fair queue, outputs, user settings, retention.

    Contract for every implementation:
    - Each method is atomic: it commits entirely or not at all, and its reads see one consistent state,
      also against other processes using the same database.
    - Times are unix seconds as floats (UTC), read from the clock given to `open`; backend lease times
      may come from the database server's clock instead (see `acquire_backend`).
    - Status changes follow `bot.jobs.TRANSITIONS`. A move the job's current status does not allow
      raises `InvalidTransition` (its `current` tells a lost race, e.g. a cancel that came first, from
      a bug) and changes nothing. A method that changes one job raises `JobNotFound` for an id that does
      not exist (`update_progress` ignores it); reads return None or nothing.
    - The queue is fair: a claim takes the oldest job of the least recently served user of the least
      recently served guild (round robin over guilds, then over users inside the guild, FIFO per user);
      a guild or user that never was served ranks by when it first queued.
    """

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, location: str, /, *, clock: Callable[[], float] = time.time) -> Self:
        """Connect to the database at `location` (the engine's own: a file path, a URL), creating and
        migrating it to the latest schema. An engine may take more (SQLite also takes a PathLike).

        Raises `SchemaTooNew`, leaving the database untouched, if a newer bot wrote it.
        """
        ...

    async def close(self) -> None:
        """Release the connection; idempotent."""
        ...

    async def __aenter__(self) -> Self:
        """Use the store as `async with await Store.open(...) as store:`."""
        ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the store."""
        ...

    async def schema_version(self) -> int:
        """Return the number of the last migration applied to the database."""
        ...

    # -------------------------------------------------------------------------- enqueue, claim

    async def enqueue_many(self, jobs: Sequence[NewJob], limits: EnqueueLimits | None = None) -> list[Job]:
        """Insert the jobs of one member command as one batch, in order, and return them queued.

        With `limits`, all jobs must belong to one guild and one user (else `ValueError`), and the caps are
        checked in the same transaction as the insert, so concurrent commands (from any process) cannot
        both slip under a cap; the checks run in the order max_jobs_per_command, per_user_per_minute (a
        batch counts as one command, any guild, within `RATE_WINDOW_S`), per_user_active (queued,
        submitted and running jobs of the user in the guild), per_guild_queued. The first broken cap
        raises `LimitExceeded` with its facts and nothing is inserted. Raises `JobNotFound` for a missing
        parent job, `ValueError` for a malformed job (unknown kind, request_json that is not JSON,
        negative parent_index). Every job's `batch_id` is the id of the batch's first job.
        """
        ...

    async def count_queued_for_guild(self, guild_id: int) -> int:
        """Return how many jobs wait in the guild's queue."""
        ...

    async def claim_next(
        self,
        backend: str,
        models: Collection[str] | None = None,
        *,
        prompt_id_factory: Callable[[], str] = new_prompt_id,
    ) -> Job | None:
        """Move the fairest queued job to `submitted` on `backend` and return it; None if none can go.

        `models` (None: no restriction) limits the pick to jobs whose model is one of them or that have
        no model; fairness applies among those. The new ComfyUI prompt id (from `prompt_id_factory`)
        is committed with the claim, before the caller posts the prompt, so a
        restart finds it through `list_in_flight`. Progress is reset to 0.
        """
        ...

    async def positions(self, guild_id: int) -> dict[int, int]:
        """Return {job_id: 1-based place} for the guild's queued jobs, in the order claims take them.

        Exact while every backend can run every model.
        """
        ...

    async def position_of(self, job_id: int) -> int | None:
        """Return the job's 1-based place in its guild's queue, or None if it is not queued (or missing)."""
        ...

    async def queue_snapshot(self) -> QueueSnapshot:
        """Return active jobs by status (queued, submitted, running, all present) and queued jobs per guild."""
        ...

    # ---------------------------------------------------------------------------- transitions

    async def mark_running(self, job_id: int) -> Job:
        """Record that ComfyUI started the submitted job; a running job is returned unchanged."""
        ...

    async def update_progress(self, job_id: int, progress: float) -> None:
        """Record the progress (clamped into 0..1; NaN raises `ValueError`) of a submitted or running job.

        Ignored for any other status or a missing job. May skip a write that changes the stored value by
        less than `PROGRESS_WRITE_STEP`, unless it reaches 1 or goes backwards.
        """
        ...

    async def complete(self, job_id: int, outputs: Sequence[OutputFile]) -> Job:
        """Mark the job completed (progress 1, error cleared) with its outputs (index = list position)."""
        ...

    async def fail(self, job_id: int, error: str) -> Job:
        """Mark the job failed with an error text (from queued, submitted or running)."""
        ...

    async def cancel(self, job_id: int) -> JobStatus:
        """Cancel the job and return its previous status (`submitted`/`running`: ComfyUI must drop it)."""
        ...

    async def requeue(self, job_id: int, reason: str) -> Job:
        """Put a submitted or running job back in the queue (its backend failed or went away).

        It keeps its original `queued_at`, so it is its user's next job again; `attempts` grows by one,
        `reason` is kept in `error`; backend, prompt id, progress and start times are cleared.
        """
        ...

    async def set_status_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that shows the job's queue position and progress."""
        ...

    async def set_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that carries the job's images and buttons."""
        ...

    # ---------------------------------------------------------------------------------- reads

    async def get(self, job_id: int) -> Job | None:
        """Return the job, or None if it does not exist."""
        ...

    async def job_by_message(self, message_id: int) -> Job | None:
        """Return the job whose status or result message is `message_id` (the result first), or None.

        An indexed lookup: reactions on any message of the bot ask it.
        """
        ...

    async def list_in_flight(self) -> list[Job]:
        """Return submitted and running jobs, oldest id first (for restart reconciliation)."""
        ...

    async def list_guild_jobs(
        self, guild_id: int, statuses: Collection[JobStatus] | None = None, limit: int = 50, offset: int = 0
    ) -> list[Job]:
        """Return the guild's jobs (only `statuses`, unless None), newest id first."""
        ...

    async def list_user_jobs(
        self,
        user_id: int,
        guild_id: int | None = None,
        statuses: Collection[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Return the user's jobs (in one guild, or everywhere), newest `created_at` first."""
        ...

    async def cancellable_jobs(
        self, guild_id: int, user_id: int | None, query: str, limit: int = 25
    ) -> list[Job]:
        """Return active jobs in the guild (only the user's, unless None) matching `query`, newest first.

        The query matches anywhere in the prompt (case-insensitive for ASCII; `%` and `_` are literal) or
        the start of the job id (a leading '#' is ignored).
        """
        ...

    async def outputs(self, job_id: int) -> list[JobOutput]:
        """Return the job's outputs in index order (empty for a missing job)."""
        ...

    async def stats(self, guild_id: int, since: float) -> GuildStats:
        """Count the guild's jobs that finished since `since`, and what waits or runs now."""
        ...

    # ------------------------------------------------------------------------------- settings

    async def get_user_settings(self, user_id: int) -> UserSettings | None:
        """Return the member's saved settings, or None if they never saved any."""
        ...

    async def update_user_settings(
        self,
        user_id: int,
        *,
        model: str | Unset | None = UNSET,
        aspect: str | Unset | None = UNSET,
        style: str | Unset | None = UNSET,
        negative: str | Unset | None = UNSET,
        ping: bool | Unset = UNSET,
        remix: bool | Unset = UNSET,
    ) -> UserSettings:
        """Change some of the member's settings (None clears one; `UNSET` ones stay) and stamp `updated_at`.

        `ping` (True unless the member turned it off) and `remix` (False until set) are switches: they
        cannot be cleared, only set.
        """
        ...

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        ...

    # ------------------------------------------------------------------------------ retention

    async def purge_finished_before(self, ts: float) -> list[str]:
        """Delete terminal jobs that finished before `ts`, with their outputs; return the output paths.

        A job with a child still queued, submitted or running is kept (the child needs its image);
        children of deleted jobs stay, with `parent_job_id` None. Paths are in job, then index order.
        Job ids are never reused, even after the newest jobs were deleted.
        """
        ...

    async def completed_without_result_message(self, since: float, until: float | None = None) -> list[Job]:
        """Return completed jobs with a status message but no result message that finished in [since, until).

        No `until`: up to now. These are results the bot never got to show (it stopped between saving and posting them, or
        Discord refused them). Oldest id first.
        """
        ...

    async def finished_output_bytes(self) -> list[tuple[float, int]]:
        """Return (finished_at, summed output bytes) of every terminal job with outputs, oldest first."""
        ...

    async def total_output_bytes(self) -> int:
        """Return the summed size of all stored outputs."""
        ...

    async def image_prompt_files_in_use(self) -> set[str]:
        """Return the `file` of every image prompt a job in the database still has, whatever its status:
        its `image_prompt` and each of its `blend_images`."""
        ...

    # ------------------------------------------------------------------------------ backend leases

    async def acquire_backend(self, backend: str, holder: str, ttl_s: float) -> bool:
        """Hold `backend` for `ttl_s` seconds from now: True when `holder` has it (it was free, its lease
        had expired, or it already was `holder`'s, which renews it), False while another holder's lease
        runs. One process drives a ComfyUI backend at a time; with several processes on one database,
        this is how they agree which. "Now" is the store's clock for an engine used by one process
        (SQLite), the database server's for one shared by processes on several hosts (PostgreSQL), so
        hosts whose clocks disagree still agree on when a lease runs out."""
        ...

    async def release_backends(self, holder: str) -> None:
        """Give up every lease of `holder` at once (a clean shutdown hands its backends over)."""
        ...

    async def backend_leases(self) -> dict[str, BackendLease]:
        """Every backend's lease, expired ones included (for /status and the drills)."""
        ...
