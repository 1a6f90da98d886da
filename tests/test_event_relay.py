"""Job events between processes: every event survives the trip as JSON; the bus forwards only its own."""

from __future__ import annotations

import json

import pytest

from bot.event_relay import MAX_DETAIL, MAX_PAYLOAD, decode_event, encode_event
from bot.events import (
    Cancelled,
    Completed,
    EventBus,
    Failed,
    JobEvent,
    Progress,
    Queued,
    Started,
    Waiting,
)
from bot.reasons import Failure, FailureKind, WaitReason

EVENTS: list[JobEvent] = [
    Queued(1, 10, position=3),
    Waiting(2, 10, reason=WaitReason.NO_BACKEND),
    Started(3, 10, backend="gpu0"),
    Progress(4, 10, fraction=0.5, step=10, total=20, eta_s=3.5),
    Progress(4, 10, fraction=0.25, step=5, total=20, eta_s=None),
    Completed(5, 11, paths=("5_0.png", "5_1.png"), grid_path="5_grid.png"),
    Completed(6, 11, paths=("6_0.png",), grid_path=None),
    Failed(7, 11, failure=Failure(FailureKind.ATTEMPTS, "gpu0", 3, FailureKind.BACKEND_UNAVAILABLE)),
    Failed(8, 11, failure=Failure(FailureKind.OTHER, "an old free-text reason: with a colon")),
    Cancelled(9, 12),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_json(event: JobEvent) -> None:
    wire = json.dumps(encode_event(event))
    assert decode_event(json.loads(wire)) == event


def test_a_preview_travels_as_a_flag_not_as_bytes() -> None:
    event = Progress(
        4, 10, fraction=0.5, step=1, total=2, preview=b"\xff" * 50_000, preview_mime="image/jpeg"
    )
    data = encode_event(event)
    assert data["preview"] is True
    assert len(json.dumps(data)) < 200
    assert decode_event(data).preview is None  # the receiver reads the bytes from job_previews


def test_a_long_failure_detail_is_cut_to_fit_a_notification() -> None:
    event = Failed(7, 11, failure=Failure(FailureKind.EXECUTION_FAILED, "x" * 20_000))
    data = encode_event(event)
    assert len(json.dumps(data).encode()) < MAX_PAYLOAD
    decoded = decode_event(data)
    assert isinstance(decoded, Failed)
    assert decoded.failure.kind is FailureKind.EXECUTION_FAILED
    assert len(decoded.failure.detail) == MAX_DETAIL


@pytest.mark.parametrize("data", [{"t": "Nope", "job": 1, "guild": 2}, {"t": "Queued", "job": 1}, {}])
def test_unreadable_messages_are_refused(data: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError)):
        decode_event(data)


def test_the_bus_forwards_what_it_publishes_but_not_what_it_delivers() -> None:
    bus = EventBus()
    forwarded: list[JobEvent] = []
    bus.add_forwarder(forwarded.append)
    with bus.subscribe() as inbox:
        bus.publish(Queued(1, 10, position=1))
        bus.deliver(Queued(2, 10, position=1))
        assert [inbox.get_nowait(), inbox.get_nowait()] == [
            Queued(1, 10, position=1),
            Queued(2, 10, position=1),
        ]
    assert forwarded == [Queued(1, 10, position=1)]
    bus.remove_forwarder(forwarded.append)
    bus.publish(Cancelled(3, 10))
    assert len(forwarded) == 1
