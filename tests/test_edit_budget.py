"""The per-channel edit budget keeps every window of `per` seconds at `limit` edits or fewer."""

from __future__ import annotations

import asyncio
import time

from cogs._edit_budget import EditBudget


async def test_edits_in_one_channel_are_paced_to_the_window() -> None:
    budget = EditBudget(limit=2, per=0.2)
    times = []
    for _ in range(5):
        await budget.acquire(1)
        times.append(time.monotonic())
    for index in range(len(times) - 2):
        assert times[index + 2] - times[index] >= 0.2 - 0.005  # never 3 edits inside one window


async def test_channels_do_not_wait_for_each_other() -> None:
    budget = EditBudget(limit=1, per=30.0)
    await budget.acquire(1)
    async with asyncio.timeout(1):  # a second channel has its own window
        await budget.acquire(2)
    waiting = asyncio.create_task(budget.acquire(1))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
