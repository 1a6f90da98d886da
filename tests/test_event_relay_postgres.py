"""Job events between two bot processes on one PostgreSQL database: two relays, each with its own bus.

Each `PostgresEventRelay` here stands for one process: it forwards what its bus publishes and delivers
what the other one sent. Nothing is mocked: the notifications, the preview table and the terminated
connections are the server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import pytest

from bot.event_relay import PostgresEventRelay
from bot.events import Cancelled, Completed, EventBus, JobEvent, Progress, Started, Subscription
from bot.jobs import Job
from bot.store import PostgresStore
from tests.store.helpers import GUILD_A, enqueue, new_job

T = TypeVar("T")
WAIT_S = 10.0  # an upper bound for one relayed event; a passing test takes milliseconds


@dataclass
class Process:
    """One bot process's part: its bus, its relay, and what the relay told it."""

    bus: EventBus
    relay: PostgresEventRelay
    inbox: Subscription
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    reconnected: asyncio.Event = field(default_factory=asyncio.Event)
    wakes: int = 0
    reconnects: int = 0


async def soon(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT_S)


@contextlib.asynccontextmanager
async def process(url: str) -> AsyncIterator[Process]:
    bus = EventBus()
    woken, reconnected = asyncio.Event(), asyncio.Event()
    state: list[Process] = []

    def on_wake() -> None:
        state[0].wakes += 1
        woken.set()

    def on_reconnect() -> None:
        state[0].reconnects += 1
        reconnected.set()

    relay = PostgresEventRelay(
        lambda: asyncpg.connect(url), bus, on_wake=on_wake, on_reconnect=on_reconnect, reconnect_s=0.01
    )
    state.append(Process(bus, relay, bus.subscribe(), woken, reconnected))
    await soon(relay.start())
    try:
        yield state[0]
    finally:
        await relay.close()


@pytest.fixture
async def job(pg_url: str) -> AsyncIterator[Job]:
    """A job in a migrated database (previews belong to jobs)."""
    async with await PostgresStore.open(pg_url, max_size=1) as store:
        yield await enqueue(store, new_job())


@pytest.fixture
async def a(pg_url: str, job: Job) -> AsyncIterator[Process]:
    async with process(pg_url) as opened:
        yield opened


@pytest.fixture
async def b(pg_url: str, job: Job) -> AsyncIterator[Process]:
    async with process(pg_url) as opened:
        yield opened


async def previews(url: str) -> dict[int, bytes]:
    conn = await asyncpg.connect(url)
    try:
        return {
            r["job_id"]: bytes(r["data"]) for r in await conn.fetch("SELECT job_id, data FROM job_previews")
        }
    finally:
        await conn.close()


async def terminate_backends(url: str) -> int:
    """End every other session on the test's database, as a failover or an operator would."""
    database = url.rpartition("/")[2].partition("?")[0]
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await conn.close()


def drain(inbox: Subscription) -> list[JobEvent]:
    events = []
    while (event := inbox.get_nowait()) is not None:
        events.append(event)
    return events


# ------------------------------------------------------------------------------------ events


async def test_an_event_published_on_one_bus_is_delivered_on_the_other_and_not_echoed_back(
    a: Process, b: Process, job: Job
) -> None:
    started = Started(job.id, GUILD_A, backend="gpu0")
    a.bus.publish(started)
    assert await soon(b.inbox.get()) == started

    cancelled = Cancelled(job.id, GUILD_A)
    b.bus.publish(cancelled)  # sent after B got A's event, so A hears its own first if it echoes
    assert await soon(a.inbox.get()) == started  # A's own publish, delivered locally
    assert await soon(a.inbox.get()) == cancelled
    assert drain(a.inbox) == [] and drain(b.inbox) == [cancelled]
    assert (a.relay.received, b.relay.received) == (1, 1)


async def test_a_progress_with_a_50_kb_preview_arrives_with_its_bytes(
    a: Process, b: Process, job: Job, pg_url: str
) -> None:
    image = os.urandom(50_000)
    a.bus.publish(Progress(job.id, GUILD_A, 0.5, 10, 20, 3.0, preview=image, preview_mime="image/jpeg"))

    got = await soon(b.inbox.get())

    assert isinstance(got, Progress) and (got.fraction, got.step, got.total, got.eta_s) == (0.5, 10, 20, 3.0)
    assert got.preview == image and got.preview_mime == "image/jpeg"
    assert await previews(pg_url) == {job.id: image}  # through the table: a notification holds 8,000 bytes

    a.bus.publish(Completed(job.id, GUILD_A, paths=("1_0.png",)))
    assert isinstance(await soon(b.inbox.get()), Completed)
    assert await previews(pg_url) == {}  # the job ended: its preview went with it


async def test_a_preview_is_never_overtaken_by_the_jobs_next_state(a: Process, b: Process, job: Job) -> None:
    image = os.urandom(50_000)
    a.bus.publish(Progress(job.id, GUILD_A, 0.9, 18, 20, preview=image, preview_mime="image/png"))
    a.bus.publish(Started(job.id, GUILD_A, backend="gpu1"))  # requeued, and started again elsewhere
    a.bus.publish(Progress(job.id + 1, GUILD_A, 0.1, 2, 20))  # another job's news

    got = [await soon(b.inbox.get()) for _ in range(3)]

    assert [type(event) for event in got] == [Progress, Started, Progress]
    assert isinstance(got[0], Progress) and got[0].preview == image


async def test_a_preview_of_a_job_not_in_the_database_does_not_cut_the_relay(
    a: Process, b: Process, job: Job
) -> None:
    a.bus.publish(
        Progress(job.id + 1000, GUILD_A, 0.5, 1, 2, preview=b"\xff" * 100, preview_mime="image/jpeg")
    )
    a.bus.publish(Started(job.id, GUILD_A, backend="gpu0"))

    first, second = await soon(b.inbox.get()), await soon(b.inbox.get())

    assert isinstance(first, Progress) and first.job_id == job.id + 1000 and first.preview is None
    assert second == Started(job.id, GUILD_A, backend="gpu0")
    assert (a.reconnects, b.reconnects) == (0, 0) and a.relay.connected


async def test_a_relay_that_sends_while_it_receives_previews_keeps_its_connection(
    a: Process, b: Process, pg_url: str
) -> None:
    """Both processes busy at once: B's own notifications and its preview reads share one connection."""
    async with await PostgresStore.open(pg_url, max_size=1) as store:
        *jobs, last = await store.enqueue_many([new_job(user=i) for i in range(41)])  # one preview per job
    sent = {job.id: os.urandom(3000) for job in jobs}
    for job in jobs:
        a.bus.publish(Progress(job.id, GUILD_A, 0.5, 1, 2, preview=sent[job.id], preview_mime="image/jpeg"))
        b.bus.publish(Started(job.id, GUILD_A, backend="gpu0"))
        b.bus.publish(Progress(job.id, GUILD_A, 0.5, 1, 2))
    a.bus.publish(Cancelled(last.id, GUILD_A))  # the end (a job whose end takes no preview along)

    received: dict[int, bytes | None] = {}
    while (event := await soon(b.inbox.get())) != Cancelled(last.id, GUILD_A):
        if isinstance(event, Progress) and event.preview_mime is not None:  # A's, not B's own
            received[event.job_id] = event.preview

    assert (a.reconnects, b.reconnects) == (0, 0)
    assert received == sent


# -------------------------------------------------------------------------------------- wake


async def test_wake_others_calls_the_other_process_on_wake_only(a: Process, b: Process, job: Job) -> None:
    a.relay.wake_others()
    await soon(b.woken.wait())

    b.bus.publish(Cancelled(job.id, GUILD_A))  # after the wake: when A has it, A has seen its own wake
    await soon(a.inbox.get())
    assert (a.wakes, b.wakes) == (0, 1)


# ------------------------------------------------------------------------------------ reconnect


async def test_the_relays_reconnect_after_their_backends_are_terminated_and_events_flow_again(
    a: Process, b: Process, job: Job, pg_url: str
) -> None:
    assert await terminate_backends(pg_url) >= 2

    await soon(a.reconnected.wait())
    await soon(b.reconnected.wait())
    assert a.relay.connected and b.relay.connected

    image = os.urandom(50_000)
    a.bus.publish(Progress(job.id, GUILD_A, 0.25, 5, 20, preview=image, preview_mime="image/jpeg"))
    got = await soon(b.inbox.get())
    assert isinstance(got, Progress) and got.preview == image
    b.bus.publish(Cancelled(job.id, GUILD_A))
    assert await soon(_next_of(a.inbox, Cancelled)) == Cancelled(job.id, GUILD_A)
    assert (a.reconnects, b.reconnects) == (1, 1)


async def _next_of(inbox: Subscription, kind: type[JobEvent]) -> JobEvent:
    while not isinstance(event := await inbox.get(), kind):
        pass
    return event
