"""The newest known state of one job's message, folded from the job's events; the presenter shows it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from bot.events import JobEvent, Progress, Queued, Started, Waiting
from bot.jobs import Job
from cogs._render import StatusState
from cogs._words.status import waiting_text


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A message in a channel."""

    channel_id: int
    message_id: int


class Tracker:
    """The newest known state of one job, what its message shows, and the task showing it while there is
    something to show (an idle tracker has no task, so a long queue costs little memory)."""

    __slots__ = (
        "_done",
        "_wakeup",
        "attached",
        "dirty",
        "finished",
        "job",
        "job_id",
        "last_edit",
        "ref",
        "shown",
        "slot",
        "state",
        "task",
        "terminal",
        "urgent",
    )

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.state = StatusState()
        self.terminal: JobEvent | None = None
        # Plain flags and futures made on demand, not asyncio.Events (~0.9 KB each): thousands of waiting
        # jobs keep a tracker each.
        self.dirty = False  # the state changed since it was last looked at
        self.urgent = False  # ... by something other than progress: show it without the throttle
        self.finished = False  # the job's end is shown (or there is nothing to show)
        self._wakeup: asyncio.Future[None] | None = None  # the task's throttle wait, cut short when urgent
        self._done: asyncio.Future[None] | None = None  # for wait_shown
        self.task: asyncio.Task[None] | None = None
        self.slot: asyncio.Future[None] | None = None  # a status edit waiting for the channel's budget
        # Known once the task has looked the job up: the job, its message, what that shows, when edited.
        self.attached = False
        self.job: Job | None = None
        self.ref: MessageRef | None = None
        self.shown: tuple[str, bytes | None] | None = None
        self.last_edit: float | None = None

    def apply(self, event: JobEvent) -> None:
        """Fold an event into the state; everything but progress asks for an edit at once."""
        state = self.state
        if isinstance(event, Progress):
            self.state = replace(
                state,
                position=None,
                waiting=None,
                started=True,
                fraction=event.fraction,
                step=event.step,
                total=event.total,
                eta_s=event.eta_s,
                preview=event.preview if event.preview is not None else state.preview,
                preview_mime=event.preview_mime if event.preview is not None else state.preview_mime,
            )
        else:
            if isinstance(event, Queued):
                # A job back in the queue (its backend failed) starts over.
                self.state = StatusState(
                    position=event.position, waiting=None if state.started else state.waiting
                )
            elif isinstance(event, Waiting):
                self.state = (
                    replace(state, waiting=waiting_text(event.reason)) if not state.started else state
                )
            elif isinstance(event, Started):
                self.state = StatusState(started=True)
            elif event.terminal:
                self.terminal = event
                if self.slot is not None and not self.slot.done():
                    self.slot.cancel()  # no status edit any more: the final one takes the turn
            self.urgent = True
            if self._wakeup is not None and not self._wakeup.done():
                self._wakeup.set_result(None)
        self.dirty = True

    async def wait_urgent(self, delay: float) -> None:
        """Wait `delay` seconds, or less if something urgent happens."""
        if self.urgent:
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(delay):
                await self._wakeup
        except TimeoutError:
            pass
        finally:
            self._wakeup = None

    def finish(self) -> None:
        """The job's end is shown: release whoever waits for it."""
        self.finished = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait_finished(self) -> None:
        """Wait until `finish()`."""
        if self.finished:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)
