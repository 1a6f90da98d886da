"""A per-channel budget for message edits, so a burst of jobs in one channel stays under Discord's limit.

Discord allows about 5 message edits per 5 seconds per channel; past that it answers 429. discord.py retries
those, but every 429 counts towards Discord's invalid-request limit, so the bot paces itself instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class EditBudget:
    """At most `limit` edits per `per` seconds in each channel; `acquire` waits (FIFO) for a free slot."""

    def __init__(self, limit: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.per = per
        self._clock = clock
        self._sent: dict[int, deque[float]] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def acquire(self, channel_id: int) -> None:
        """Wait until an edit in `channel_id` fits in the window, and count it."""
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        async with lock:
            sent = self._sent.setdefault(channel_id, deque())
            while True:
                now = self._clock()
                while sent and now - sent[0] >= self.per:
                    sent.popleft()
                if len(sent) < self.limit:
                    sent.append(now)
                    return
                # Waiting for Discord's window to move on is the point here.
                await asyncio.sleep(self.per - (now - sent[0]))
