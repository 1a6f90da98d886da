"""One prompt's events as its consumer reads them (`PromptWatch`), and the bounded buffers that hold them."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable

from comfy.events import (
    DROPPABLE_EVENTS,
    TERMINAL_EVENTS,
    Event,
    Executed,
    Executing,
    Failed,
    Interrupted,
    Lost,
    Succeeded,
)
from comfy.models import ImageRef, WatchClosed
from comfy.outcome import Outcome, OutcomeStatus

log = logging.getLogger(__name__)


class EventBuffer:
    """A bounded FIFO of events: when full, the oldest droppable event (progress, preview) goes first.

    Terminal and node events are never dropped, so a slow consumer still sees how the prompt ended.
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[Event] = deque()
        self._limit = max(1, limit)
        self.dropped = 0

    def push(self, event: Event) -> None:
        if len(self._items) >= self._limit:
            for index, old in enumerate(self._items):
                if isinstance(old, DROPPABLE_EVENTS):
                    del self._items[index]
                    self.dropped += 1
                    break
            else:
                if isinstance(event, DROPPABLE_EVENTS):
                    self.dropped += 1
                    return
        self._items.append(event)

    def pop(self) -> Event | None:
        return self._items.popleft() if self._items else None

    def drain(self) -> list[Event]:
        items = list(self._items)
        self._items.clear()
        return items


class Orphans:
    """Events of prompts nobody watches yet, kept briefly so a late `watch()` still sees them."""

    def __init__(self, ttl_s: float, limit: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_s
        self._limit = limit
        self._clock = clock
        self._buffers: OrderedDict[str, tuple[float, EventBuffer]] = OrderedDict()

    def _prune(self) -> None:
        now = self._clock()
        while self._buffers:
            prompt_id, (since, _) = next(iter(self._buffers.items()))
            if now - since < self._ttl and len(self._buffers) <= 16:
                break
            del self._buffers[prompt_id]

    def add(self, event: Event) -> None:
        self._prune()
        if event.prompt_id not in self._buffers:
            self._buffers[event.prompt_id] = (self._clock(), EventBuffer(self._limit))
        self._buffers[event.prompt_id][1].push(event)

    def take(self, prompt_id: str) -> list[Event]:
        self._prune()
        entry = self._buffers.pop(prompt_id, None)
        return entry[1].drain() if entry else []


class PromptWatch:
    """Events and the final outcome of one prompt.

    Iterate it (`async for event in watch`) for progress, previews and node events; the iteration
    ends after the terminal event (Succeeded, Failed, Interrupted or Lost). `await watch.result()`
    gives the Outcome whether or not anyone iterates. Get one from `ComfyClient.watch()` *before*
    posting the prompt so no event is missed.
    """

    def __init__(
        self,
        prompt_id: str,
        limit: int,
        clock: Callable[[], float],
        forget: Callable[[PromptWatch], None],
    ) -> None:
        self.prompt_id = prompt_id
        self._forget = forget  # tells the event socket to stop routing to this watch
        self._clock = clock
        self._buffer = EventBuffer(limit)
        self._wakeup = asyncio.Event()
        self._finished = asyncio.Event()
        self._outcome: Outcome | None = None
        self._outputs: dict[str, tuple[ImageRef, ...]] = {}
        self._iteration_over = False
        self._closed = False
        # Set by the client and its event socket: whether ComfyUI accepted the prompt, whether the socket dropped while
        # it was in flight (so WebSocket outputs may be incomplete), whether a cancel was asked.
        self.posted = False
        self.gap = False
        self.cancel_requested = False
        self.success_seen = False
        self.node: str | None = None
        self.last_activity = clock()

    # ----------------------------------------------------------------- consumer side

    @property
    def done(self) -> bool:
        """True once the outcome is known (or the watch was closed)."""
        return self._finished.is_set()

    @property
    def outcome(self) -> Outcome | None:
        """The outcome, once known."""
        return self._outcome

    @property
    def dropped_events(self) -> int:
        """How many progress/preview events were dropped because the consumer was slow."""
        return self._buffer.dropped

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = self._buffer.pop()
            if event is not None:
                if isinstance(event, TERMINAL_EVENTS):
                    self._iteration_over = True
                return event
            if self._iteration_over or self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def result(self) -> Outcome:
        """Wait for the outcome (wrap in `asyncio.timeout` to bound it); WatchClosed if closed first."""
        await self._finished.wait()
        if self._outcome is None:
            raise WatchClosed(f"stopped watching prompt {self.prompt_id} before it finished")
        return self._outcome

    async def wait(self) -> Outcome:
        """Like result(), but raise ExecutionFailed, PromptInterrupted or PromptLost unless it succeeded."""
        return (await self.result()).raise_for_status()

    def close(self) -> None:
        """Stop watching: the iteration ends and result() raises WatchClosed if no outcome yet."""
        if self._closed:
            return
        self._closed = True
        self._finished.set()
        self._wakeup.set()
        self._forget(self)

    async def __aenter__(self) -> PromptWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- fed by the event socket

    @property
    def outputs_seen(self) -> dict[str, tuple[ImageRef, ...]]:
        """The images of the `executed` events seen so far, by node."""
        return dict(self._outputs)

    def _push(self, event: Event) -> None:
        self._buffer.push(event)
        self._wakeup.set()

    def deliver(self, event: Event) -> None:
        """Take one routed event (called by the socket reader; never blocks)."""
        if self.done:
            return
        self.last_activity = self._clock()
        if isinstance(event, Executing):
            self.node = event.node
        elif isinstance(event, Executed) and event.images:
            self._outputs[event.node] = event.images
        if isinstance(event, Succeeded):
            self.success_seen = True
            if self.gap:
                # Some `executed` frames may have been sent while the socket was down: the outputs
                # come from /history once the run has ended (RunEnded or reconciliation).
                return
            self.finish(Outcome(self.prompt_id, OutcomeStatus.SUCCEEDED, dict(self._outputs)), event)
        elif isinstance(event, Failed):
            self.finish(Outcome(self.prompt_id, OutcomeStatus.FAILED, dict(self._outputs), event), event)
        elif isinstance(event, Interrupted):
            self.finish(Outcome(self.prompt_id, OutcomeStatus.INTERRUPTED, reason=event.reason), event)
        elif isinstance(event, Lost):
            self.finish(Outcome(self.prompt_id, OutcomeStatus.LOST, reason=event.reason), event)
        else:
            self._push(event)

    def finish(self, outcome: Outcome, event: Event | None = None) -> None:
        """End the watch with `outcome` (announced by `event`, else by the outcome's own terminal event)."""
        if self.done:
            return
        self._outcome = outcome
        self._push(event if event is not None else outcome.to_event())
        self._finished.set()
        log.debug("prompt %s ended: %s", self.prompt_id, outcome.status.value)
        self._forget(self)
