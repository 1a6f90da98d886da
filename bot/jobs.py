"""Job records, their state machine, enqueue limits and the fair (round-robin) dispatch order."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_END = object()


class Row(Protocol):
    """A database row read by column name: sqlite3.Row, asyncpg.Record, or a plain mapping."""

    def __getitem__(self, key: str, /) -> Any: ...


class JobStatus(StrEnum):
    """Where a job is in its life; persisted as the value string."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled: a terminal job never moves again."""
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        """True while the job is waiting or on a backend (counts against per-user caps)."""
        return self in ACTIVE_STATUSES


class JobKind(StrEnum):
    """What a job asks ComfyUI to do; persisted as the value string."""

    IMAGINE = "imagine"
    UPSCALE = "upscale"
    VARIATION = "variation"
    REROLL = "reroll"
    ZOOM = "zoom"
    PAN = "pan"
    IMG2IMG = "img2img"
    BLEND = "blend"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
IN_FLIGHT_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING})
ACTIVE_STATUSES: frozenset[JobStatus] = IN_FLIGHT_STATUSES | {JobStatus.QUEUED}

# The one state machine. The SQL trigger in migrations/0001_initial.sql lists the same pairs
# (a test proves they agree); the store's UPDATEs are guarded by `status IN (sources_of(target))`.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTED, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.SUBMITTED: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    """Return whether a job may move from `current` to `target`."""
    return target in TRANSITIONS[current]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Return the statuses from which a job may move to `target`."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


class JobNotFound(LookupError):
    """No job with this id (it never existed, or retention purged it)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class InvalidTransition(Exception):
    """The job's current status does not allow the requested move.

    Raised both for programming errors (completing a queued job) and for lost races (the scheduler
    marks a job running just after a member cancelled it): `current` tells which.
    """

    def __init__(self, job_id: int, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job {job_id} cannot go from {current.value} to {target.value}")
        self.job_id = job_id
        self.current = current
        self.target = target


class LimitKind(StrEnum):
    """Which `[limits]` setting refused an enqueue; values are the config keys."""

    PER_USER_ACTIVE = "per_user_active"
    PER_GUILD_QUEUED = "per_guild_queued"
    PER_USER_PER_MINUTE = "per_user_per_minute"
    MAX_JOBS_PER_COMMAND = "max_jobs_per_command"


class LimitExceeded(Exception):
    """An enqueue would break a limit. Facts only; the member-facing wording lives with the cogs.

    `allowed` is the configured cap, `requested` how many jobs the refused command asked for, `current`
    what already counts against the cap (the member's active jobs in the guild, the guild's queued jobs,
    or the member's commands in the last minute; 0 for `max_jobs_per_command`), `retry_after_s` when a
    per-minute refusal would pass (None for the other kinds).
    """

    def __init__(
        self,
        kind: LimitKind,
        allowed: int,
        retry_after_s: float | None = None,
        *,
        requested: int,
        current: int = 0,
    ) -> None:
        super().__init__(f"{kind.value} limit {allowed}: {current} counted, {requested} requested")
        self.kind = kind
        self.allowed = allowed
        self.retry_after_s = retry_after_s
        self.requested = requested
        self.current = current


@dataclass(frozen=True, slots=True)
class EnqueueLimits:
    """Caps checked atomically by `Store.enqueue_many`; None switches one off."""

    per_user_active: int | None = None
    per_guild_queued: int | None = None
    per_user_per_minute: int | None = None
    max_jobs_per_command: int | None = None


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """An image a member attached, saved under the output folder (`file` is relative to it)."""

    file: str
    width: int
    height: int

    def to_json(self) -> str:
        """Serialize for storage: `{"file", "width", "height"}`."""
        return json.dumps({"file": self.file, "width": self.width, "height": self.height}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ImagePrompt:
        """Rebuild a stored image prompt; a missing or mistyped size reads as 0 (ComfyUI then keeps its own)."""
        return cls._from_data(json.loads(text))

    @classmethod
    def _from_data(cls, data: Any) -> ImagePrompt:
        data = data if isinstance(data, dict) else {}
        width, height = data.get("width"), data.get("height")
        return cls(
            file=str(data.get("file", "")),
            width=width if isinstance(width, int) else 0,
            height=height if isinstance(height, int) else 0,
        )

    @staticmethod
    def list_to_json(images: Sequence[ImagePrompt]) -> str:
        """Serialize a blend's images for storage: a JSON list of `to_json` objects."""
        return json.dumps(
            [{"file": i.file, "width": i.width, "height": i.height} for i in images], ensure_ascii=False
        )

    @classmethod
    def list_from_json(cls, text: str | None) -> tuple[ImagePrompt, ...]:
        """Rebuild a blend's images stored by `list_to_json` (None or not a list: none)."""
        data = json.loads(text) if text is not None else None
        return tuple(cls._from_data(item) for item in data) if isinstance(data, list) else ()


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue. `request_json` is the parsed request as JSON text, opaque to the store."""

    guild_id: int
    channel_id: int
    user_id: int
    kind: JobKind
    prompt: str
    request_json: str = "{}"
    model: str | None = None  # None: any backend can run it
    parent_job_id: int | None = None
    parent_index: int | None = None
    action: str | None = None  # e.g. "vary_strong", "zoom_2", "pan_left"
    status_message_id: int | None = None
    image_prompt: ImagePrompt | None = None  # img2img: the attached image the job starts from
    blend_images: tuple[ImagePrompt, ...] = ()  # a blend (or its reroll): the 2 to 5 images it mixes


@dataclass(frozen=True, slots=True)
class OutputFile:
    """An image a completed job produced, saved by the caller; its index is its list position."""

    path: str
    width: int
    height: int
    bytes: int


@dataclass(frozen=True, slots=True)
class JobOutput:
    """A stored output row."""

    job_id: int
    idx: int
    path: str
    width: int
    height: int
    bytes: int
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> JobOutput:
        """Build a JobOutput from a `SELECT *` row of the job_outputs table (any engine)."""
        return cls(
            job_id=int(row["job_id"]),
            idx=int(row["idx"]),
            path=str(row["path"]),
            width=int(row["width"]),
            height=int(row["height"]),
            bytes=int(row["bytes"]),
            created_at=float(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One job row. Times are unix seconds (float, UTC); ids are Discord snowflakes."""

    id: int
    batch_id: int | None
    guild_id: int
    channel_id: int
    user_id: int
    kind: JobKind
    action: str | None
    parent_job_id: int | None
    parent_index: int | None
    prompt: str
    request_json: str
    model: str | None
    status: JobStatus
    backend: str | None
    prompt_id: str | None
    progress: float
    error: str | None
    status_channel_id: int | None
    status_message_id: int | None
    result_channel_id: int | None
    result_message_id: int | None
    attempts: int
    created_at: float
    queued_at: float
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    image_prompt: ImagePrompt | None = None
    blend_images: tuple[ImagePrompt, ...] = ()

    @classmethod
    def from_row(cls, row: Row) -> Job:
        """Build a Job from a `SELECT *` row of the jobs table."""
        values = {name: row[name] for name in cls.__slots__}
        values["kind"] = JobKind(values["kind"])
        values["status"] = JobStatus(values["status"])
        if values["image_prompt"] is not None:
            values["image_prompt"] = ImagePrompt.from_json(values["image_prompt"])
        values["blend_images"] = ImagePrompt.list_from_json(values["blend_images"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class UserSettings:
    """A member's defaults for new jobs (global per user, like Midjourney's /settings)."""

    user_id: int
    model: str | None = None
    aspect: str | None = None
    style: str | None = None
    negative: str | None = None
    ping: bool = True  # the result message mentions (notifies) the member
    remix: bool = False  # follow-ups first ask for the prompt (Midjourney's Remix mode)
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: Row) -> UserSettings:
        """Build UserSettings from a `SELECT *` row of the user_settings table (switches may be 0/1)."""
        return cls(
            user_id=int(row["user_id"]),
            model=row["model"],
            aspect=row["aspect"],
            style=row["style"],
            negative=row["negative"],
            ping=bool(row["ping"]),
            remix=bool(row["remix"]),
            updated_at=float(row["updated_at"]),
        )


class CancelRefusal(StrEnum):
    """Why a member may not cancel a job."""

    MISSING = "missing"  # no such job in this guild (another guild's jobs are nobody's business here)
    NOT_YOURS = "not_yours"  # someone else's, and the member is no admin
    ENDED = "ended"  # it already completed, failed or was cancelled


def cancel_refusal(job: Job | None, *, guild_id: int, actor_id: int, admin: bool) -> CancelRefusal | None:
    """Whether `actor_id` may cancel `job` from `guild_id`: None when they may, else why not. The one rule
    behind both the Cancel button and /cancel (each words the refusal its own way)."""
    if job is None or job.guild_id != guild_id:
        return CancelRefusal.MISSING
    if job.user_id != actor_id and not admin:
        return CancelRefusal.NOT_YOURS
    if job.status.is_terminal:
        return CancelRefusal.ENDED
    return None


@dataclass(frozen=True, slots=True)
class GuildStats:
    """Jobs of one guild that finished since a moment, and what is waiting or running now."""

    completed: int
    failed: int
    cancelled: int
    waiting: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Every guild's queue now: active jobs by status (queued, submitted, running) and queued jobs per guild."""

    by_status: Mapping[str, int]
    queued_by_guild: Mapping[int, int]


def round_robin(queues: Iterable[Sequence[T]]) -> list[T]:
    """Interleave queues: one item from each in turn, dropping a queue once it is empty.

    This is the dispatch order of a set of waiting jobs when nothing new arrives: the queues are
    users in the order a guild will serve them (each user's jobs FIFO), or guilds in the order the
    dispatcher will serve them (each guild's own round-robin order).
    """
    pending = deque(iter(q) for q in queues if len(q))
    order: list[T] = []
    while pending:
        it = pending.popleft()
        item = next(it, _END)
        if item is _END:
            continue
        order.append(item)  # type: ignore[arg-type]
        pending.append(it)
    return order


def clamp_progress(progress: float) -> float:
    """Clamp a progress fraction into [0, 1]; NaN is rejected."""
    if math.isnan(progress):
        raise ValueError("progress is NaN")
    return min(1.0, max(0.0, progress))
