"""A per-channel budget for message edits, so a burst of jobs in one channel stays under Discord's limit.

Discord allows about 5 message edits per 5 seconds per channel; past that it answers 429. discord.py retries
those, but every 429 counts towards Discord's invalid-request limit, so the bot paces itself instead.

When the channel is saturated, what a member waits for goes first: a finished job's result before a
state change (queue position, started), and a state change before a progress update. Within one
priority, edits go in the order they asked.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class EditPriority(IntEnum):
    """Lower goes first."""

    RESULT = 0  # a job's final message: its images, its failure, its cancellation
    STATE = 1  # queued position, started, waiting for a server
    PROGRESS = 2  # step n/N, preview


@dataclass
class _Channel:
    sent: deque[float] = field(default_factory=deque)
    waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class EditBudget:
    """At most `limit` edits per `per` seconds in each channel; `acquire` waits for a free slot, highest
    priority first, then first come first served."""

    def __init__(self, limit: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.per = per
        self._clock = clock
        self._channels: dict[int, _Channel] = {}
        self._order = itertools.count()

    def waiting(self, channel_id: int) -> int:
        """How many edits wait for a slot in the channel."""
        channel = self._channels.get(channel_id)
        return 0 if channel is None else sum(1 for *_, fut in channel.waiters if not fut.done())

    async def acquire(self, channel_id: int, priority: EditPriority = EditPriority.RESULT) -> None:
        """Wait until an edit in `channel_id` fits in the window, and count it."""
        await self.request(channel_id, priority)

    def request(self, channel_id: int, priority: EditPriority = EditPriority.RESULT) -> asyncio.Future[None]:
        """Ask for a slot: the future resolves when the edit may go. Cancel it to give the turn up; a
        cancelled request is never counted."""
        channel = self._channels.setdefault(channel_id, _Channel())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(channel.waiters, (int(priority), next(self._order), future))
        self._grant(channel)
        return future

    def _grant(self, channel: _Channel) -> None:
        """Hand the free slots to the best waiters; come back when the oldest counted edit leaves the window."""
        if channel.timer is not None:
            channel.timer.cancel()  # a no-op when it is the timer calling
            channel.timer = None
        now = self._clock()
        while channel.sent and now - channel.sent[0] >= self.per:
            channel.sent.popleft()
        while channel.waiters and len(channel.sent) < self.limit:
            *_, future = heapq.heappop(channel.waiters)
            if future.done():
                continue
            channel.sent.append(now)
            future.set_result(None)
        while channel.waiters and channel.waiters[0][2].done():
            heapq.heappop(channel.waiters)
        if channel.waiters:
            delay = max(0.0, self.per - (now - channel.sent[0]))
            channel.timer = asyncio.get_running_loop().call_later(delay, self._grant, channel)
