"""The per-channel edit budget keeps every window of `per` seconds at `limit` edits or fewer."""

from __future__ import annotations

import asyncio
import time

from cogs._edit_budget import EditBudget, EditPriority


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


async def test_a_saturated_channel_serves_results_then_state_changes_then_progress() -> None:
    budget = EditBudget(limit=1, per=0.05)
    await budget.acquire(1)  # the window is full
    order: list[str] = []

    async def edit(name: str, priority: EditPriority) -> None:
        await budget.acquire(1, priority)
        order.append(name)

    tasks = [
        asyncio.create_task(edit(name, priority))
        for name, priority in [
            ("progress 1", EditPriority.PROGRESS),
            ("position", EditPriority.STATE),
            ("progress 2", EditPriority.PROGRESS),
            ("result 1", EditPriority.RESULT),
            ("result 2", EditPriority.RESULT),
        ]
    ]
    await asyncio.sleep(0)  # every waiter has asked
    assert budget.waiting(1) == 5
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)

    assert order == ["result 1", "result 2", "position", "progress 1", "progress 2"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    budget = EditBudget(limit=1, per=0.05)
    await budget.acquire(7)
    first = asyncio.create_task(budget.acquire(7, EditPriority.RESULT))
    second = asyncio.create_task(budget.acquire(7, EditPriority.PROGRESS))
    await asyncio.sleep(0)
    first.cancel()
    async with asyncio.timeout(5):
        await second
    assert first.cancelled() and budget.waiting(7) == 0
