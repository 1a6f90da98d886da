"""Job events published by the scheduler, and subscriptions that never block the publisher.

A subscriber that falls behind does not slow the scheduler: `publish` never awaits. Progress and queue
position events coalesce (a slow reader sees the newest one), while state changes (started, completed,
failed, cancelled) are always delivered, in order, per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bot.reasons import Failure, WaitReason

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Something happened to a job."""

    job_id: int
    guild_id: int

    @property
    def coalesces(self) -> bool:
        """Whether a newer event of the same type replaces an undelivered older one."""
        return False

    @property
    def terminal(self) -> bool:
        """Whether the job has reached its end with this event."""
        return False


@dataclass(frozen=True, slots=True)
class Queued(JobEvent):
    """The job waits in its guild's queue at `position` (1-based)."""

    position: int = 0

    @property
    def coalesces(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Waiting(JobEvent):
    """The job waits for a reason its member should know (for example: no backend is up)."""

    reason: WaitReason = WaitReason.NO_BACKEND

    @property
    def coalesces(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Started(JobEvent):
    """A backend began running the job."""

    backend: str = ""


@dataclass(frozen=True, slots=True)
class Progress(JobEvent):
    """Overall progress across the workflow's sampling nodes, with the latest preview image if any."""

    fraction: float = 0.0
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    preview: bytes | None = field(default=None, repr=False)
    preview_mime: str | None = None

    @property
    def coalesces(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Completed(JobEvent):
    """The job finished; its images are saved (paths in index order, plus the grid when there are several)."""

    paths: tuple[str, ...] = ()
    grid_path: str | None = None

    @property
    def terminal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Failed(JobEvent):
    """The job failed; `failure` says why (the cogs put it into words)."""

    failure: Failure

    @property
    def terminal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Cancelled(JobEvent):
    """The job was cancelled."""

    @property
    def terminal(self) -> bool:
        return True


class Subscription:
    """An ordered, coalescing inbox of job events for one consumer."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._events: deque[list[JobEvent]] = deque()
        # job id -> the still-undelivered slot holding that job's newest coalescible event of a type
        self._coalesce: dict[tuple[int, type[JobEvent]], list[JobEvent]] = {}
        self._ready = asyncio.Event()
        self.dropped = 0

    def offer(self, event: JobEvent) -> None:
        """Queue an event without blocking; a coalescible event replaces its undelivered predecessor."""
        key = (event.job_id, type(event))
        slot = self._coalesce.get(key) if event.coalesces else None
        if slot is not None:
            old = slot[0]
            if isinstance(event, Progress) and event.preview is None and isinstance(old, Progress):
                event = replace(event, preview=old.preview, preview_mime=old.preview_mime)
            slot[0] = event
            self.dropped += 1
        else:
            slot = [event]
            self._events.append(slot)
            # A state change must not be overtaken: later progress starts a fresh slot after it.
            for stale in [k for k in self._coalesce if k[0] == event.job_id]:
                del self._coalesce[stale]
            if event.coalesces:
                self._coalesce[key] = slot
        self._ready.set()

    def pending(self) -> int:
        """How many events wait to be read."""
        return len(self._events)

    def get_nowait(self) -> JobEvent | None:
        """The next event, or None when there is none."""
        if not self._events:
            self._ready.clear()
            return None
        slot = self._events.popleft()
        event = slot[0]
        key = (event.job_id, type(event))
        if self._coalesce.get(key) is slot:
            del self._coalesce[key]
        if not self._events:
            self._ready.clear()
        return event

    async def get(self) -> JobEvent:
        """Wait for the next event."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            await self._ready.wait()

    def close(self) -> None:
        """Stop receiving events."""
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus:
    """Fan-out of job events to subscriptions; `publish` is synchronous and never blocks.

    Events published here also go to the forwarders (the relay to other bot processes sharing the
    database); events that arrive from another process come in through `deliver`, which is not forwarded.
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._forwarders: list[Callable[[JobEvent], None]] = []

    def add_forwarder(self, forward: Callable[[JobEvent], None]) -> None:
        """Hand every event published in this process to `forward` too (it must not block)."""
        self._forwarders.append(forward)

    def remove_forwarder(self, forward: Callable[[JobEvent], None]) -> None:
        """Stop forwarding to `forward` (no error if it was not added)."""
        if forward in self._forwarders:
            self._forwarders.remove(forward)

    def subscribe(self) -> Subscription:
        """A new subscription receiving every event published from now on."""
        subscription = Subscription(self)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (no error if it was already removed)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: JobEvent) -> None:
        """Deliver an event of this process to every subscription and forwarder."""
        self.deliver(event)
        for forward in self._forwarders:
            forward(event)

    def deliver(self, event: JobEvent) -> None:
        """Deliver `event` to every subscription only (an event relayed from another process)."""
        for subscription in self._subscriptions:
            subscription.offer(event)
