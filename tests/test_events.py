"""Job events: a slow subscriber coalesces progress but never loses a state change or blocks the publisher."""

from __future__ import annotations

import asyncio

from bot.events import Cancelled, Completed, EventBus, Progress, Queued, Started


def _drain(sub) -> list:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


def test_progress_coalesces_to_the_newest_for_a_slow_subscriber() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(Started(1, 10, backend="gpu0"))
    for step in range(1, 101):
        bus.publish(Progress(1, 10, fraction=step / 100, step=step, total=100))
    events = _drain(sub)
    assert [type(e) for e in events] == [Started, Progress]
    assert events[1].step == 100
    assert sub.dropped == 99


def test_state_changes_are_never_coalesced_or_reordered() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(Queued(1, 10, position=3))
    bus.publish(Queued(1, 10, position=2))
    bus.publish(Started(1, 10))
    bus.publish(Progress(1, 10, step=1, total=4))
    bus.publish(Progress(1, 10, step=4, total=4))
    bus.publish(Completed(1, 10, paths=("a.png",)))
    bus.publish(Progress(2, 11, step=1, total=4))
    events = _drain(sub)
    assert [(type(e).__name__, e.job_id) for e in events] == [
        ("Queued", 1),
        ("Started", 1),
        ("Progress", 1),
        ("Completed", 1),
        ("Progress", 2),
    ]
    assert events[0].position == 2 and events[2].step == 4


def test_coalesced_progress_keeps_the_latest_preview_image() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(Progress(1, 10, step=1, total=4, preview=b"jpeg1", preview_mime="image/jpeg"))
    bus.publish(Progress(1, 10, step=2, total=4))
    (event,) = _drain(sub)
    assert event.step == 2 and event.preview == b"jpeg1"


async def test_get_waits_for_the_next_event_and_unsubscribed_inboxes_get_nothing() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    other = bus.subscribe()
    other.close()
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    bus.publish(Cancelled(5, 1))
    assert await asyncio.wait_for(waiter, 1) == Cancelled(5, 1)
    assert other.pending() == 0
