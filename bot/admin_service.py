"""What /queue, /cancel, /status and /settings do, without Discord: permissions, paging, reports, validation."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Final

from bot.backends import Backend
from bot.jobs import (
    IN_FLIGHT_STATUSES,
    CancelRefusal,
    Job,
    JobKind,
    JobNotFound,
    JobStatus,
    UserSettings,
    cancel_refusal,
)
from bot.services import Services
from comfy.params import ParamError, ParseContext, parse_prompt

log = logging.getLogger(__name__)

GIB: Final = 1024**3
PER_PAGE: Final = 10
EXCERPT_CHARS: Final = 60
CHOICE_LABEL_CHARS: Final = 100  # Discord's limit for an autocomplete choice name
MAX_CHOICES: Final = 25  # Discord's limit for autocomplete choices
NEGATIVE_MAX_CHARS: Final = 500
ERROR_CHARS: Final = 200
# Far more than any guild queues (limits.per_guild_queued); the listing is bounded all the same.
_MAX_LISTED: Final = 10_000
# The aspect ratios /settings offers, widest last; those beyond `[params] max_aspect` are left out.
ASPECT_PRESETS: Final = ("1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4", "21:9")
_ASPECT_TEXT = re.compile(r"\s*([0-9]{1,4})\s*:\s*([0-9]{1,4})\s*")
_JOB_REF = re.compile(r"\s*#?\s*([0-9]{1,18})\s*")

STATUS_WORDS: Final = {
    JobStatus.QUEUED: "waiting",
    JobStatus.SUBMITTED: "starting",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


class AdminError(Exception):
    """A refusal or a bad value; `str(exc)` tells the member what was wrong and what is allowed."""


class Keep(Enum):
    """The type of KEEP."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
"""Leave a setting as it is (the default of every `update_settings` argument); None clears one."""


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

    @property
    def status_word(self) -> str:
        """The status as a member reads it (waiting, starting, running)."""
        return STATUS_WORDS[self.status]


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

    @property
    def vram(self) -> str | None:
        """VRAM in use as text, e.g. `5.2 / 8.0 GiB`, or None when unknown."""
        if self.vram_total is None or self.vram_used is None:
            return None
        return format_vram(self.vram_used, self.vram_total)


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


def format_vram(used: int, total: int) -> str:
    """Bytes in use out of a total, in GiB with one decimal: `5.2 / 8.0 GiB`."""
    return f"{max(0, used) / GIB:.1f} / {max(0, total) / GIB:.1f} GiB"


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


def parse_job_ref(text: str) -> int:
    """A job number as a member types it (`42`, `#42`), or AdminError."""
    match = _JOB_REF.fullmatch(text)
    if match is None:
        raise AdminError(
            f"`{excerpt(text, 40) or ' '}` is not a job. Pick a job from the list that appears as you type, "
            "or give its number, like `#42`."
        )
    return int(match.group(1))


def _in_flight_order(job: Job) -> tuple[int, float, int]:
    # Running jobs first (longest running first), then those waiting in ComfyUI's own queue.
    started = job.started_at if job.started_at is not None else math.inf
    return (0 if job.status is JobStatus.RUNNING else 1, started, job.id)


# ------------------------------------------------------------------------------------------ service


class AdminService:
    """The logic behind /queue, /cancel, /status and /settings; the cogs only parse and render."""

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

    # -------------------------------------------------------------------- /cancel

    async def cancel(self, job_id: int, *, guild_id: int, actor_id: int, admin: bool) -> str:
        """Cancel a job the actor may cancel (admins: any in the guild; members: their own).

        Returns the confirmation for the actor; raises AdminError with the reason otherwise.
        """
        job = await self._services.store.get(job_id)
        refusal = cancel_refusal(job, guild_id=guild_id, actor_id=actor_id, admin=admin)
        if refusal is CancelRefusal.MISSING or job is None:
            raise AdminError(
                f"There is no job #{job_id} in this server. Pick one from the list that appears as you type."
            )
        if refusal is CancelRefusal.NOT_YOURS:
            raise AdminError(
                f"Job #{job_id} is not yours: you can cancel only your own jobs. "
                "Server admins (Manage Server) can cancel any job."
            )
        if refusal is CancelRefusal.ENDED:
            raise AdminError(
                f"Job #{job_id} has already ended ({STATUS_WORDS[job.status]}); there is nothing to cancel."
            )
        try:
            previous = await self._services.scheduler.cancel(job_id)
        except JobNotFound:
            previous = None
        if previous is None:
            raise AdminError(f"Job #{job_id} ended just now; there is nothing to cancel.")
        log.info(
            "job %s (%s, user %s) cancelled by %s%s",
            job_id,
            previous.value,
            job.user_id,
            actor_id,
            " (admin)" if admin and actor_id != job.user_id else "",
        )
        whose = "" if job.user_id == actor_id else " of another member"
        where = f" on {job.backend}" if previous in IN_FLIGHT_STATUSES and job.backend else ""
        was = STATUS_WORDS[previous]
        return f"Cancelled job #{job_id}{whose} (it was {was}{where}): “{excerpt(job.prompt)}”"

    async def cancel_choices(self, guild_id: int, user_id: int | None, query: str) -> list[tuple[str, int]]:
        """Autocomplete for /cancel: (label, job id) of cancellable jobs, newest first, at most 25.

        `user_id` None lists every job of the guild (admins); labels look like
        `#42 · running · a lighthouse at du…` and are at most 100 characters.
        """
        jobs = await self._services.store.cancellable_jobs(guild_id, user_id, query[:100], limit=MAX_CHOICES)
        return [(choice_label(job), job.id) for job in jobs]

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

    # -------------------------------------------------------------------- /settings

    @property
    def model_names(self) -> list[str]:
        """The configured models, the default first."""
        return [m.name for m in self._services.config.models]

    @property
    def style_names(self) -> list[str]:
        """The configured styles."""
        return [s.name for s in self._services.config.styles]

    @property
    def aspect_choices(self) -> list[str]:
        """The aspect ratios /settings offers, within `[params] max_aspect`."""
        widest = self._services.config.params.max_aspect
        found = []
        for preset in ASPECT_PRESETS:
            width, height = (int(side) for side in preset.split(":"))
            if max(width / height, height / width) <= widest:
                found.append(preset)
        return found

    async def get_settings(self, user_id: int) -> UserSettings:
        """The member's saved defaults (all None when they never saved any)."""
        saved = await self._services.store.get_user_settings(user_id)
        return saved if saved is not None else UserSettings(user_id=user_id)

    async def update_settings(
        self,
        user_id: int,
        *,
        model: str | Keep | None = KEEP,
        aspect: str | Keep | None = KEEP,
        style: str | Keep | None = KEEP,
        negative: str | Keep | None = KEEP,
    ) -> UserSettings:
        """Validate and save some of the member's defaults; None clears one, KEEP leaves it.

        Raises AdminError (nothing saved) when a value is not allowed.
        """
        changes: dict[str, str | None] = {}
        if model is not KEEP:
            changes["model"] = None if model is None else self._model(model)
        if aspect is not KEEP:
            changes["aspect"] = None if aspect is None else self._aspect(aspect)
        if style is not KEEP:
            changes["style"] = None if style is None else self._style(style)
        if negative is not KEEP:
            changes["negative"] = None if negative is None else _negative(negative)
        if not changes:
            return await self.get_settings(user_id)
        saved = await self._services.store.update_user_settings(user_id, **changes)
        log.debug("user %s changed settings %s", user_id, sorted(changes))
        return saved

    async def clear_settings(self, user_id: int) -> bool:
        """Forget all of the member's defaults; True when there were any."""
        return await self._services.store.clear_user_settings(user_id)

    def _model(self, name: str) -> str:
        found = self._services.config.model(name.strip())
        if found is None:
            raise AdminError(
                f"There is no model called `{excerpt(name, 40)}`. Models you can use: "
                f"{', '.join(self.model_names)}."
            )
        return found.name

    def _style(self, name: str) -> str:
        folded = name.strip().lower()
        for style in self._services.config.styles:
            if style.name.lower() == folded:
                return style.name
        if not self.style_names:
            raise AdminError("There are no styles on this server.")
        raise AdminError(
            f"There is no style called `{excerpt(name, 40)}`. Styles you can use: "
            f"{', '.join(self.style_names)}."
        )

    def _aspect(self, value: str) -> str:
        match = _ASPECT_TEXT.fullmatch(value)
        if match is None:
            raise AdminError(
                f"`{excerpt(value, 40)}` is not an aspect ratio; write two whole numbers like `16:9` or `2:3`."
            )
        # Kept as written (21:9 stays 21:9, not 7:3), so the panel shows what the member picked.
        aspect = f"{int(match.group(1))}:{int(match.group(2))}"
        config = self._services.config
        context = ParseContext(models=config.models, styles=config.styles, limits=config.params)
        try:
            # The same rules /imagine applies to `--ar`, so a saved default never fails a later prompt.
            parse_prompt(f"x --ar {aspect}", context)
        except ParamError as exc:
            raise AdminError(str(exc)) from None
        return aspect


def _negative(text: str) -> str | None:
    line = " ".join(text.split())
    if not line:
        return None
    if len(line) > NEGATIVE_MAX_CHARS:
        raise AdminError(
            f"The negative prompt is {len(line)} characters long; at most {NEGATIVE_MAX_CHARS} are allowed."
        )
    return line


def choice_label(job: Job) -> str:
    """`#42 · running · a lighthouse at du…`, at most 100 characters (an autocomplete choice name)."""
    head = f"#{job.id} · {STATUS_WORDS[job.status]}"
    text = excerpt(job.prompt, CHOICE_LABEL_CHARS - len(head) - 3)
    return f"{head} · {text}" if text else head


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
