"""Job events between bot processes that share one PostgreSQL database, over LISTEN/NOTIFY.

The process that runs a job publishes its events on its own bus; the relay forwards them as notifications
on one channel, and every other process delivers them to its own bus, where the presenter of the process
that holds the job's guild shows them. A notification carries at most 8,000 bytes, so a preview image
travels through the `job_previews` table and the notification only says that a new one is there.
Notifications are not durable: after a reconnect the relay calls `on_reconnect`, so whoever shows jobs
can read what it may have missed from the database. (An event whose notification was being sent when
the sender's own connection died is lost to the others; they are not told to re-read.)

The relay's one connection is used by one task only (asyncpg runs one command at a time per connection):
that task sends this process's events and reads the previews of received ones, in the order they came,
so a job's preview is never delivered after the job's next state. A statement the server refuses (say,
a preview of a job that is not in the database) costs that event its preview, not the connection.

Besides job events the relay carries `wake` (new jobs are queued: dispatchers look for work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncpg

from bot.events import (
    Cancelled,
    Completed,
    EventBus,
    Failed,
    JobEvent,
    Progress,
    Queued,
    Started,
    Subscription,
    Waiting,
)
from bot.reasons import Failure, WaitReason
from bot.store.postgres.connection import connection_lost

log = logging.getLogger(__name__)

CHANNEL = "comfy_imagine_events"
MAX_PAYLOAD = 7900  # PostgreSQL refuses a notification payload of 8,000 bytes or more
MAX_DETAIL = 2000  # characters of a failure's detail carried in a notification (the job row has it all)
PREVIEW_INTERVAL_S = 1.0  # at most one preview per job per second goes through the database

_EVENT_TYPES: dict[str, type[JobEvent]] = {
    cls.__name__: cls for cls in (Queued, Waiting, Started, Progress, Completed, Failed, Cancelled)
}


def _without_preview(event: Progress) -> Progress:
    return Progress(event.job_id, event.guild_id, event.fraction, event.step, event.total, event.eta_s)


def encode_event(event: JobEvent) -> dict[str, Any]:
    """A job event as JSON-ready data (a preview image becomes the flag `preview`)."""
    data: dict[str, Any] = {"t": type(event).__name__, "job": event.job_id, "guild": event.guild_id}
    if isinstance(event, Queued):
        data["position"] = event.position
    elif isinstance(event, Waiting):
        data["reason"] = event.reason.value
    elif isinstance(event, Started):
        data["backend"] = event.backend
    elif isinstance(event, Progress):
        data.update(fraction=event.fraction, step=event.step, total=event.total, eta_s=event.eta_s)
        if event.preview is not None:
            data["preview"] = True
    elif isinstance(event, Completed):
        data.update(paths=list(event.paths), grid=event.grid_path)
    elif isinstance(event, Failed):
        failure = event.failure
        if len(failure.detail) > MAX_DETAIL:
            failure = Failure(
                failure.kind, failure.detail[: MAX_DETAIL - 1] + "…", failure.number, failure.cause
            )
        data["failure"] = failure.encode()
    return data


def decode_event(data: dict[str, Any]) -> JobEvent:
    """The job event `encode_event` made (without its preview bytes); ValueError for anything else."""
    cls = _EVENT_TYPES.get(str(data.get("t")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('t')!r}")
    job_id, guild_id = int(data["job"]), int(data["guild"])
    if cls is Queued:
        return Queued(job_id, guild_id, position=int(data["position"]))
    if cls is Waiting:
        return Waiting(job_id, guild_id, reason=WaitReason(data["reason"]))
    if cls is Started:
        return Started(job_id, guild_id, backend=str(data["backend"]))
    if cls is Progress:
        eta = data.get("eta_s")
        return Progress(
            job_id,
            guild_id,
            fraction=float(data["fraction"]),
            step=int(data["step"]),
            total=int(data["total"]),
            eta_s=None if eta is None else float(eta),
        )
    if cls is Completed:
        grid = data.get("grid")
        return Completed(job_id, guild_id, paths=tuple(map(str, data["paths"])), grid_path=grid and str(grid))
    if cls is Failed:
        return Failed(job_id, guild_id, failure=Failure.decode(str(data["failure"])))
    return Cancelled(job_id, guild_id)


class PostgresEventRelay:
    """Forwards this process's job events to the others and delivers theirs, through one connection."""

    def __init__(
        self,
        connect: Callable[[], Any],
        bus: EventBus,
        *,
        on_wake: Callable[[], None] = lambda: None,
        on_reconnect: Callable[[], None] = lambda: None,
        reconnect_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`connect` opens a new asyncpg connection (the URL, with its password, stays with the caller)."""
        self._connect = connect
        self.bus = bus
        self.origin = uuid.uuid4().hex[:12]
        self.on_wake = on_wake
        self._on_reconnect = on_reconnect
        self._reconnect_s = reconnect_s
        self._clock = clock
        self._outbox = Subscription(bus)  # not subscribed: filled by the forwarder, coalescing progress
        self._wake_pending = False
        self._conn: asyncpg.Connection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Received events in arrival order, each with whether its preview waits in job_previews.
        self._inbox: deque[tuple[JobEvent, bool]] = deque()
        self._last_preview: dict[int, float] = {}
        self._kick = asyncio.Event()
        self.sent = 0
        self.received = 0

    @property
    def connected(self) -> bool:
        """Whether the relay's connection is up (notifications flow)."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect, listen, and start forwarding; waits for the first connection."""
        self.bus.add_forwarder(self._forward)
        self._task = asyncio.create_task(self._run(), name="event-relay")
        await self._connected.wait()

    async def close(self) -> None:
        """Stop forwarding and close the connection (events not sent yet are dropped: the jobs' rows hold
        their state)."""
        self.bus.remove_forwarder(self._forward)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._disconnect()

    def wake_others(self) -> None:
        """Tell the other processes that jobs were queued."""
        self._wake_pending = True
        self._kick.set()

    # ------------------------------------------------------------------ sending

    def _forward(self, event: JobEvent) -> None:
        if isinstance(event, Progress) and event.preview is not None:
            now = self._clock()
            if now - self._last_preview.get(event.job_id, -PREVIEW_INTERVAL_S) < PREVIEW_INTERVAL_S:
                # The member sees the next preview; this one only moves the bar.
                event = _without_preview(event)
            else:
                self._last_preview[event.job_id] = now
        if event.terminal:
            self._last_preview.pop(event.job_id, None)
        self._outbox.offer(event)
        self._kick.set()

    async def _send_pending(self, conn: asyncpg.Connection) -> None:
        if self._wake_pending:
            self._wake_pending = False
            await self._notify(conn, {"k": "wake"})
        while (event := self._outbox.get_nowait()) is not None:
            try:
                if isinstance(event, Progress) and event.preview is not None:
                    await conn.execute(
                        "INSERT INTO job_previews (job_id, mime, data, updated_at) VALUES ($1, $2, $3, $4) "
                        "ON CONFLICT (job_id) DO UPDATE SET mime = excluded.mime, data = excluded.data, "
                        "updated_at = excluded.updated_at",
                        event.job_id,
                        event.preview_mime,
                        event.preview,
                        time.time(),
                    )
                elif event.terminal:
                    await conn.execute("DELETE FROM job_previews WHERE job_id = $1", event.job_id)
            except asyncpg.PostgresError as exc:
                if connection_lost(exc):
                    raise
                log.warning("job %d: the relay cannot store its preview (%s)", event.job_id, exc)
                if isinstance(event, Progress):
                    event = _without_preview(event)
            await self._notify(conn, {"k": "e", **encode_event(event)})

    async def _notify(self, conn: asyncpg.Connection, message: dict[str, Any]) -> None:
        payload = json.dumps({"o": self.origin, **message}, ensure_ascii=False, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD:
            log.warning("job event too large to relay (%d bytes): %s", len(payload), payload[:200])
            return
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        self.sent += 1

    # ------------------------------------------------------------------ receiving

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self.origin:
                return
            self.received += 1
            if message.get("k") == "wake":
                self.on_wake()
                return
            if message.get("k") != "e":
                return
            event = decode_event(message)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a relayed message that cannot be read (%s): %.200s", exc, payload)
            return
        # Delivered by the connection's task, after the preview is read: never ahead of earlier events.
        self._inbox.append((event, bool(message.get("preview")) and isinstance(event, Progress)))
        self._kick.set()

    async def _deliver_received(self, conn: asyncpg.Connection) -> None:
        """Deliver the received events in order, each Progress flagged with a preview with its bytes."""
        while self._inbox:
            event, has_preview = self._inbox[0]
            if has_preview and isinstance(event, Progress):
                try:
                    row = await conn.fetchrow(
                        "SELECT mime, data FROM job_previews WHERE job_id = $1", event.job_id
                    )
                except asyncpg.PostgresError as exc:
                    if connection_lost(exc):
                        raise  # kept in the inbox: read again on the next connection
                    log.warning("job %d: the relay cannot read its preview (%s)", event.job_id, exc)
                    row = None
                if row is not None:  # None: the job ended meanwhile (its next event follows)
                    event = Progress(
                        event.job_id,
                        event.guild_id,
                        event.fraction,
                        event.step,
                        event.total,
                        event.eta_s,
                        preview=bytes(row["data"]),
                        preview_mime=row["mime"],
                    )
            self._inbox.popleft()
            self.bus.deliver(event)

    # ------------------------------------------------------------------ connection

    async def _run(self) -> None:
        first = True
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:
                log.warning("event relay cannot connect to the database: %s; retrying", type(exc).__name__)
                await asyncio.sleep(self._reconnect_s)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn = conn
                self._connected.set()
                if not first:
                    log.info("event relay reconnected")
                    self._on_reconnect()
                first = False
                while not lost.is_set():
                    self._kick.clear()
                    await self._deliver_received(conn)
                    await self._send_pending(conn)
                    kicked = asyncio.ensure_future(self._kick.wait())
                    gone = asyncio.ensure_future(lost.wait())
                    try:
                        await asyncio.wait({kicked, gone}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        kicked.cancel()
                        gone.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event relay lost its connection (%s); reconnecting", type(exc).__name__)
            finally:
                self._connected.clear()
                await self._disconnect()
            await asyncio.sleep(self._reconnect_s)

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
