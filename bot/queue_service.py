"""What /queue and /status show, without Discord: this server's running and waiting jobs, and the backends."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from bot.backends import Backend
from bot.jobs import IN_FLIGHT_STATUSES, Job, JobKind, JobStatus

if TYPE_CHECKING:
    from bot.services import Services

PER_PAGE: Final = 10
EXCERPT_CHARS: Final = 60
ERROR_CHARS: Final = 200
# Far more than any guild queues (limits.per_guild_queued); the listing is bounded all the same.
_MAX_LISTED: Final = 10_000

# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One waiting or running job as /queue lists it."""

    job_id: int
    user_id: int
    status: JobStatus
    kind: JobKind
    excerpt: str  # the prompt on one line, trimmed
    position: int | None  # 1-based place in this guild's queue while waiting
    backend: str | None  # the backend it runs on, once it left the queue
    progress: float


@dataclass(frozen=True, slots=True)
class QueuePage:
    """One page of /queue: running jobs first, then waiting jobs in the order they will start."""

    entries: tuple[QueueEntry, ...]
    page: int  # 0-based, clamped into the pages that exist
    pages: int  # at least 1, also when there is nothing to list
    per_page: int
    total: int
    in_flight: int  # of the listed jobs (all of the guild's for admins, the viewer's own for members)
    waiting: int
    admin: bool

    @property
    def has_previous(self) -> bool:
        """Whether a page comes before this one."""
        return self.page > 0

    @property
    def has_next(self) -> bool:
        """Whether a page comes after this one."""
        return self.page < self.pages - 1

    @property
    def first_number(self) -> int:
        """The 1-based row number of the first entry on this page."""
        return self.page * self.per_page + 1


@dataclass(frozen=True, slots=True)
class BackendReport:
    """One ComfyUI backend as /status shows it."""

    name: str
    up: bool
    version: str | None
    in_flight: int  # jobs running on it or waiting in its own queue
    capacity: int
    vram_used: int | None  # bytes, from the last /system_stats
    vram_total: int | None
    on_cpu: bool  # a CPU-only server reports its RAM as "VRAM"
    last_error: str | None  # when down, or why it is paused
    paused: bool = False  # up, but taking no new job for a while after failing a prompt


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything /status shows: the backends, this guild's queue and today's finished jobs."""

    backends: tuple[BackendReport, ...]
    waiting: int
    in_flight: int
    completed_today: int
    failed_today: int
    cancelled_today: int
    day_start: float  # unix time of 00:00 UTC today

    @property
    def backends_up(self) -> int:
        """How many backends answer."""
        return sum(1 for b in self.backends if b.up)


# ------------------------------------------------------------------------------------------ helpers


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters with `…`."""
    line = " ".join(text.split())
    if limit <= 0:
        return ""
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` rows fill, at least 1 (an empty list still has a page)."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    return max(1, math.ceil(total / per_page))


def clamp_page(page: int, pages: int) -> int:
    """`page` (0-based) moved into the pages that exist."""
    return min(max(page, 0), max(pages, 1) - 1)


def midnight_utc(now: float) -> float:
    """The unix time of 00:00 UTC on the day of `now`."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def _in_flight_order(job: Job) -> tuple[int, float, int]:
    # Running jobs first (longest running first), then those waiting in ComfyUI's own queue.
    started = job.started_at if job.started_at is not None else math.inf
    return (0 if job.status is JobStatus.RUNNING else 1, started, job.id)


# ------------------------------------------------------------------------------------------ service


class QueueService:
    """The logic behind /queue and /status; the cogs only render."""

    def __init__(self, services: Services) -> None:
        self._services = services

    # -------------------------------------------------------------------- /queue

    async def queue_page(
        self, guild_id: int, *, viewer_id: int, admin: bool, page: int, per_page: int = PER_PAGE
    ) -> QueuePage:
        """One page of the guild's running and waiting jobs (admins), or of the viewer's own (members)."""
        store = self._services.store
        if admin:
            in_flight = await store.list_guild_jobs(guild_id, IN_FLIGHT_STATUSES, limit=_MAX_LISTED)
            waiting = await store.list_guild_jobs(guild_id, {JobStatus.QUEUED}, limit=_MAX_LISTED)
        else:
            own = await store.list_user_jobs(
                viewer_id, guild_id, statuses={JobStatus.QUEUED, *IN_FLIGHT_STATUSES}, limit=_MAX_LISTED
            )
            in_flight = [j for j in own if j.status in IN_FLIGHT_STATUSES]
            waiting = [j for j in own if j.status is JobStatus.QUEUED]
        positions = await store.positions(guild_id) if waiting else {}
        in_flight.sort(key=_in_flight_order)
        waiting.sort(key=lambda j: (positions.get(j.id, math.inf), j.id))
        ordered = in_flight + waiting
        pages = page_count(len(ordered), per_page)
        page = clamp_page(page, pages)
        shown = ordered[page * per_page : (page + 1) * per_page]
        return QueuePage(
            entries=tuple(self._entry(job, positions) for job in shown),
            page=page,
            pages=pages,
            per_page=per_page,
            total=len(ordered),
            in_flight=len(in_flight),
            waiting=len(waiting),
            admin=admin,
        )

    @staticmethod
    def _entry(job: Job, positions: dict[int, int]) -> QueueEntry:
        return QueueEntry(
            job_id=job.id,
            user_id=job.user_id,
            status=job.status,
            kind=job.kind,
            excerpt=excerpt(job.prompt),
            position=positions.get(job.id) if job.status is JobStatus.QUEUED else None,
            backend=job.backend if job.status in IN_FLIGHT_STATUSES else None,
            progress=job.progress,
        )

    # -------------------------------------------------------------------- /status

    async def status(self, guild_id: int) -> StatusReport:
        """The backends' health and load, this guild's queue depth and jobs finished today (UTC)."""
        scheduler = self._services.scheduler
        since = midnight_utc(self._services.clock())
        stats = await self._services.store.stats(guild_id, since)
        return StatusReport(
            backends=tuple(backend_report(b) for b in scheduler.backend_status()),
            waiting=stats.waiting,
            in_flight=stats.in_flight,
            completed_today=stats.completed,
            failed_today=stats.failed,
            cancelled_today=stats.cancelled,
            day_start=since,
        )


def backend_report(backend: Backend) -> BackendReport:
    """What /status shows about one backend, from the scheduler's last health check."""
    device = backend.stats.devices[0] if backend.stats and backend.stats.devices else None
    # The last stats of a backend that is down are stale: show its memory only while it answers.
    known = backend.up and device is not None and device.vram_total > 0
    return BackendReport(
        name=backend.name,
        up=backend.up,
        version=backend.version or None,
        in_flight=len(backend.jobs),
        capacity=backend.capacity,
        vram_used=device.vram_total - device.vram_free if known and device else None,
        vram_total=device.vram_total if known and device else None,
        on_cpu=device is not None and device.type == "cpu",
        last_error=_last_error(backend),
        paused=backend.up and backend.paused_until is not None,
    )


def _last_error(backend: Backend) -> str | None:
    error = (
        backend.last_error
        if not backend.up
        else backend.refusal
        if backend.paused_until is not None
        else None
    )
    return excerpt(error, ERROR_CHARS) if error else None
