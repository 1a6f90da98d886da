"""The one WebSocket of a ComfyUI client id: kept open, its events routed to the watch of each prompt."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any, Protocol

import aiohttp

from comfy.events import (
    TERMINAL_EVENTS,
    Cached,
    Event,
    Executed,
    Executing,
    Frame,
    Preview,
    ProgressText,
    RunEnded,
    ServerFeatures,
    Started,
    StatusUpdate,
    parse_binary_frame,
    parse_text_frame,
)
from comfy.models import BackendUnavailable, ComfyError, HistoryEntry, QueueState, trim
from comfy.outcome import Outcome, OutcomeStatus, outcome_from_history
from comfy.prompt_watch import Orphans, PromptWatch

log = logging.getLogger(__name__)

_MAX_POSTED = 4096  # prompt ids remembered as ours, for routing and reconciliation


def exponential_backoff(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (1, 2, ...): doubling, capped, half jittered."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + rand() / 2)


def describe_error(exc: BaseException) -> str:
    """A connection error in a few words (`cannot connect (Connection refused)`), for BackendUnavailable."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    return trim(text, 200)


class PromptLookup(Protocol):
    """The HTTP calls that settle watches when frames may have been missed (ComfyClient makes them)."""

    @property
    def base_url(self) -> str:
        """The server's address, for messages."""
        ...

    async def queue(self) -> QueueState:
        """What runs and what waits."""
        ...

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The history entry of a finished prompt, or None."""
        ...


class EventSocket:
    """The WebSocket of one client id, and the prompt watches its events go to.

    `connect()` opens it; it reconnects with backoff when it drops, and after a reconnect every prompt in
    flight is checked against `/queue` and `/history` (through `lookup`) so none waits forever. A watchdog
    does the same for prompts that heard nothing for a while. Events of prompts nobody watches yet are kept
    briefly, so a watch created late still sees them.
    """

    def __init__(
        self,
        lookup: PromptLookup,
        session: Callable[[], aiohttp.ClientSession],
        *,
        client_id: str,
        timeout_s: float,
        backoff: Callable[[int], float],
        preview_metadata: bool,
        heartbeat_s: float | None,
        idle_reconcile_s: float | None,
        watch_queue_size: int,
        orphan_ttl_s: float,
        max_message_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self.client_id = client_id
        self.base_url = lookup.base_url
        self.queue_remaining: int | None = None
        self.server_features: Mapping[str, Any] = {}
        self.reconnects = 0
        self._lookup = lookup
        self._session = session
        self._timeout_s = timeout_s
        self._backoff = backoff
        self._preview_metadata = preview_metadata
        self._heartbeat = heartbeat_s
        self._idle_reconcile_s = idle_reconcile_s
        self._watch_queue_size = watch_queue_size
        self._max_message = max_message_bytes
        self._clock = clock
        self._watches: dict[str, PromptWatch] = {}
        self._orphans = Orphans(orphan_ttl_s, watch_queue_size, clock)
        self._posted: OrderedDict[str, None] = OrderedDict()
        self._running: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_frame_at = clock()
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._ws is not None and not self._ws.closed

    async def disconnect(self) -> None:
        """Close the WebSocket and stop reconnecting; `connect()` opens it again."""
        tasks = [task for task in (self._supervisor, self._watchdog) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = self._watchdog = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._connected.clear()

    async def close(self) -> None:
        """Close the socket for good, stop every background check and end every watch."""
        self._closed = True
        tasks = [task for task in (self._supervisor, self._watchdog, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._connected.clear()
        for watch in list(self._watches.values()):
            watch.close()

    # ----------------------------------------------------------------- WebSocket

    def _ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={self.client_id}"

    async def connect(self) -> None:
        """Open the WebSocket if needed (idempotent); BackendUnavailable when it cannot be opened."""
        async with self._connect_lock:
            if self._closed:
                raise ComfyError(f"the client of {self.base_url} is closed")
            if self._supervisor is None or self._supervisor.done():
                ws = await self._open_socket()
                self._supervisor = asyncio.create_task(self._supervise(ws), name=f"comfy-ws {self.base_url}")
                if self._idle_reconcile_s and (self._watchdog is None or self._watchdog.done()):
                    self._watchdog = asyncio.create_task(
                        self._watch_idle(), name=f"comfy-idle {self.base_url}"
                    )
                return
        if not self._connected.is_set():
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                raise BackendUnavailable(self.base_url, "the WebSocket is down and reconnecting") from None

    async def _open_socket(self) -> aiohttp.ClientWebSocketResponse:
        session = self._session()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                ws = await session.ws_connect(
                    self._ws_url(), heartbeat=self._heartbeat, max_msg_size=self._max_message
                )
                if self._preview_metadata:
                    # Must be the first message; servers without feature flags ignore it.
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if ws is not None:
                await ws.close()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(self.base_url, "the WebSocket did not open in time") from exc
            raise BackendUnavailable(
                self.base_url, f"the WebSocket did not open: {describe_error(exc)}"
            ) from exc
        self._ws = ws
        self._last_frame_at = self._clock()
        self._connected.set()
        log.info("connected to ComfyUI at %s as client %s", self.base_url, self.client_id)
        return ws

    async def _supervise(self, ws: aiohttp.ClientWebSocketResponse | None) -> None:
        attempt = 0
        while not self._closed:
            if ws is None:
                try:
                    ws = await self._open_socket()
                except ComfyError as exc:
                    attempt += 1
                    delay = self._backoff(attempt)
                    log.warning("%s; retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                self.reconnects += 1
                self._spawn(self.reconcile(list(self._watches.values())))
            try:
                await self._read(ws)
            except Exception:  # never let the reader die: reconnect instead
                log.exception("WebSocket reader of %s failed", self.base_url)
            finally:
                self._connected.clear()
                self._ws = None
                for watch in self._watches.values():
                    watch.gap = True
                await ws.close()
            ws = None
            if not self._closed:
                log.warning("WebSocket to ComfyUI at %s closed; reconnecting", self.base_url)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            self._last_frame_at = self._clock()
            frame: Frame | None = None
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = parse_text_frame(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                frame = parse_binary_frame(message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                log.warning("WebSocket error from %s: %s", self.base_url, ws.exception())
                return
            if frame is not None:
                try:
                    self._on_frame(frame)
                except Exception:  # a bug here must not kill the socket reader
                    log.exception("failed to handle frame %r", frame)

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, StatusUpdate):
            self.queue_remaining = frame.queue_remaining
            return
        if isinstance(frame, ServerFeatures):
            self.server_features = frame.flags
            return
        if isinstance(frame, RunEnded):
            self._on_run_ended(frame.prompt_id)
            return
        self._route(frame)

    def _route(self, event: Event) -> None:
        prompt_id = event.prompt_id or self._running
        if not prompt_id:
            log.debug("dropping %s: no prompt is known to run", type(event).__name__)
            return
        ours = prompt_id in self._watches or prompt_id in self._posted
        # Only our own prompts' frames reach this socket, except progress of prompts posted without
        # a client_id, which ComfyUI broadcasts: those must not make us think a prompt of ours runs.
        if isinstance(event, Started | Cached | Executing | Executed) or (ours and event.prompt_id):
            self._running = prompt_id
        if isinstance(event, Preview | ProgressText) and not event.prompt_id:
            watch = self._watches.get(prompt_id)
            node = event.node or (watch.node if watch else None)
            if isinstance(event, Preview):
                event = replace(event, prompt_id=prompt_id, node=node)
            else:
                event = replace(event, prompt_id=prompt_id, node=node or "")
        elif not event.prompt_id:
            event = replace(event, prompt_id=prompt_id)
        if isinstance(event, TERMINAL_EVENTS) and self._running == prompt_id:
            self._running = None
        watch = self._watches.get(prompt_id)
        if watch is not None:
            watch.deliver(event)
        else:
            self._orphans.add(event)

    def _on_run_ended(self, prompt_id: str) -> None:
        if self._running == prompt_id:
            self._running = None
        watch = self._watches.get(prompt_id)
        if watch is not None and not watch.done:
            # The terminal frame was missed, or outputs must come from history after a gap.
            watch.posted = True
            self._spawn(self.reconcile([watch]))

    # ----------------------------------------------------------------- watches and reconciliation

    def watch(self, prompt_id: str) -> PromptWatch:
        """The watch of `prompt_id` (one per prompt id); create it before `queue_prompt`."""
        existing = self._watches.get(prompt_id)
        if existing is not None:
            return existing
        watch = PromptWatch(prompt_id, self._watch_queue_size, self._clock, self._forget)
        watch.posted = prompt_id in self._posted
        self._watches[prompt_id] = watch
        for event in self._orphans.take(prompt_id):
            watch.deliver(event)
        return watch

    async def reattach(self, prompt_id: str) -> PromptWatch:
        """Watch a prompt posted earlier (e.g. before a restart): finished ones end from /history."""
        await self.connect()
        watch = self.watch(prompt_id)
        watch.posted = True
        await self.reconcile([watch])
        return watch

    def watching(self, prompt_id: str) -> PromptWatch | None:
        """The watch of `prompt_id` if there is one (no new watch is made)."""
        return self._watches.get(prompt_id)

    def mark_posted(self, prompt_id: str) -> None:
        """Remember that ComfyUI has (or may have) `prompt_id`: its events are ours, and it can be reconciled."""
        self._posted[prompt_id] = None
        while len(self._posted) > _MAX_POSTED:
            self._posted.popitem(last=False)
        watch = self._watches.get(prompt_id)
        if watch is not None:
            watch.posted = True
            watch.last_activity = self._clock()

    def rekey(self, old: str, new: str) -> None:
        """Move the watch of prompt `old` to `new`, the id ComfyUI chose instead (versions before prompt_id)."""
        watch = self._watches.pop(old, None)
        if watch is None:
            return
        watch.prompt_id = new
        self._watches[new] = watch
        for event in self._orphans.take(new):
            watch.deliver(event)

    def _forget(self, watch: PromptWatch) -> None:
        if self._watches.get(watch.prompt_id) is watch:
            del self._watches[watch.prompt_id]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background check of %s failed", self.base_url, exc_info=task.exception())

    async def reconcile(self, watches: list[PromptWatch]) -> None:
        """Settle watches from /queue and /history: finished ones end, vanished ones are lost."""
        targets = [watch for watch in watches if watch.posted and not watch.done]
        if not targets:
            return
        try:
            state = await self._lookup.queue()
        except ComfyError as exc:
            log.warning("cannot check the queue of %s: %s", self.base_url, exc)
            return
        active = set(state.running_ids) | set(state.pending_ids)
        for running in state.running_ids:
            if running in self._watches:
                self._running = running
        for watch in targets:
            if watch.done or watch.prompt_id in active:
                continue
            try:
                entry = await self._lookup.history(watch.prompt_id)
            except ComfyError as exc:
                log.warning("cannot read the history of %s: %s", watch.prompt_id, exc)
                continue
            if watch.done:
                continue
            if entry is not None:
                watch.finish(outcome_from_history(entry))
            elif watch.success_seen:
                watch.finish(Outcome(watch.prompt_id, OutcomeStatus.SUCCEEDED, watch.outputs_seen))
            elif watch.cancel_requested:
                reason = "cancelled before it started"
                watch.finish(Outcome(watch.prompt_id, OutcomeStatus.INTERRUPTED, reason=reason))
            else:
                reason = (
                    f"ComfyUI at {self.base_url} no longer knows prompt {watch.prompt_id}: it is not "
                    "queued, not running and not in the history (was the server restarted?)"
                )
                log.warning("%s", reason)
                watch.finish(Outcome(watch.prompt_id, OutcomeStatus.LOST, reason=reason))

    async def _watch_idle(self) -> None:
        """Every so often, settle watches that heard nothing for a while; revive a silent socket."""
        interval = self._idle_reconcile_s or 30.0
        while not self._closed:
            await asyncio.sleep(interval / 2)
            now = self._clock()
            idle = [
                watch
                for watch in self._watches.values()
                if watch.posted and not watch.done and now - watch.last_activity >= interval
            ]
            if not idle:
                continue
            for watch in idle:
                watch.last_activity = now
            await self.reconcile(idle)
            silent = now - self._last_frame_at >= interval
            if silent and self._ws is not None and any(not watch.done for watch in idle):
                # ComfyUI stops routing to a client id when an older socket of that id closes late;
                # reconnecting registers this socket again.
                log.warning(
                    "no frame from %s for %.0fs while prompts run; reconnecting", self.base_url, interval
                )
                await self._ws.close()
