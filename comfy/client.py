"""Async client of one ComfyUI server: HTTP calls, one WebSocket, events routed to per-prompt watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from comfy.events import (
    DROPPABLE_EVENTS,
    TERMINAL_EVENTS,
    Cached,
    Event,
    Executed,
    Executing,
    Failed,
    Frame,
    Interrupted,
    Lost,
    Preview,
    ProgressText,
    RunEnded,
    ServerFeatures,
    Started,
    StatusUpdate,
    Succeeded,
    parse_binary_frame,
    parse_text_frame,
)
from comfy.models import (
    BackendUnavailable,
    BadResponse,
    ComfyError,
    ExecutionFailed,
    HistoryEntry,
    ImageRef,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    QueuedPrompt,
    QueueState,
    SystemStats,
    UploadedImage,
    WatchClosed,
    is_prompt_id,
    new_prompt_id,
    trim,
)
from comfy.outcome import Outcome, OutcomeStatus, outcome_from_history
from comfy.profiles import BackendConfig

__all__ = [
    "BackendUnavailable",
    "BadResponse",
    "ComfyClient",
    "ComfyError",
    "ExecutionFailed",
    "PromptInterrupted",
    "PromptLost",
    "PromptRejected",
    "PromptWatch",
    "WatchClosed",
    "exponential_backoff",
]

log = logging.getLogger(__name__)

_MiB = 1024 * 1024


def exponential_backoff(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (1, 2, ...): doubling, capped, half jittered."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + rand() / 2)


class _EventBuffer:
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


class _Orphans:
    """Events of prompts nobody watches yet, kept briefly so a late `watch()` still sees them."""

    def __init__(self, ttl_s: float, limit: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_s
        self._limit = limit
        self._clock = clock
        self._buffers: OrderedDict[str, tuple[float, _EventBuffer]] = OrderedDict()

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
            self._buffers[event.prompt_id] = (self._clock(), _EventBuffer(self._limit))
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

    def __init__(self, client: ComfyClient, prompt_id: str, limit: int, clock: Callable[[], float]) -> None:
        self.prompt_id = prompt_id
        self._client = client
        self._clock = clock
        self._buffer = _EventBuffer(limit)
        self._wakeup = asyncio.Event()
        self._finished = asyncio.Event()
        self._outcome: Outcome | None = None
        self._outputs: dict[str, tuple[ImageRef, ...]] = {}
        self._iteration_over = False
        self._closed = False
        # Set by the client: whether ComfyUI accepted the prompt, whether the socket dropped while
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
        self._client._forget(self)

    async def __aenter__(self) -> PromptWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- client side

    def _push(self, event: Event) -> None:
        self._buffer.push(event)
        self._wakeup.set()

    def _deliver(self, event: Event) -> None:
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
            self._finish(Outcome(self.prompt_id, OutcomeStatus.SUCCEEDED, dict(self._outputs)), event)
        elif isinstance(event, Failed):
            self._finish(Outcome(self.prompt_id, OutcomeStatus.FAILED, dict(self._outputs), event), event)
        elif isinstance(event, Interrupted):
            self._finish(Outcome(self.prompt_id, OutcomeStatus.INTERRUPTED, reason=event.reason), event)
        elif isinstance(event, Lost):
            self._finish(Outcome(self.prompt_id, OutcomeStatus.LOST, reason=event.reason), event)
        else:
            self._push(event)

    def _finish(self, outcome: Outcome, event: Event | None = None) -> None:
        if self.done:
            return
        self._outcome = outcome
        self._push(event if event is not None else outcome.to_event())
        self._finished.set()
        log.debug("prompt %s ended: %s", self.prompt_id, outcome.status.value)
        self._client._forget(self)


class ComfyClient:
    """One ComfyUI server: HTTP calls with timeouts, and one WebSocket shared by every prompt.

    Use it as `async with ComfyClient(backend) as client:`. The socket opens on `connect()` (or the
    first `queue_prompt`), reconnects with backoff when it drops, and after a reconnect every prompt
    in flight is checked against `/queue` and `/history` so none waits forever. Pass a stable
    `client_id` (persisted by the caller) so prompts posted before a restart are routed back to us.
    """

    def __init__(
        self,
        backend: BackendConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        client_id: str | None = None,
        backoff: Callable[[int], float] = exponential_backoff,
        preview_metadata: bool = True,
        heartbeat_s: float | None = 30.0,
        idle_reconcile_s: float | None = 30.0,
        watch_queue_size: int = 128,
        orphan_ttl_s: float = 30.0,
        max_download_bytes: int = 64 * _MiB,
        max_ws_message_bytes: int = 64 * _MiB,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.base_url = backend.base_url
        self.client_id = client_id or uuid.uuid4().hex
        self.queue_remaining: int | None = None
        self.server_features: Mapping[str, Any] = {}
        self._session = session
        self._owns_session = session is None
        self._backoff = backoff
        self._preview_metadata = preview_metadata
        self._heartbeat = heartbeat_s
        self._idle_reconcile_s = idle_reconcile_s
        self._watch_queue_size = watch_queue_size
        self._max_download = max_download_bytes
        self._max_ws_message = max_ws_message_bytes
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=backend.timeout_s)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=backend.timeout_s, sock_read=backend.timeout_s
        )
        self._watches: dict[str, PromptWatch] = {}
        self._orphans = _Orphans(orphan_ttl_s, watch_queue_size, clock)
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
        self.reconnects = 0

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._ws is not None and not self._ws.closed

    async def disconnect(self) -> None:
        """Close the WebSocket and stop reconnecting, keeping the client usable: `connect()` opens it again.

        For a bot process that stops driving this server (another process took it over, with the same
        client id: ComfyUI keeps one socket per client id, so two would take it from each other).
        """
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
        """Close the socket, end every watch, and close the HTTP session if this client created it."""
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
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ComfyError(f"the client of {self.base_url} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # ----------------------------------------------------------------- HTTP plumbing

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, path: str, *, limits: aiohttp.ClientTimeout | None = None, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; connection errors, timeouts and 5xx become BackendUnavailable."""
        session = self._http()
        limit = limits or self._timeout
        try:
            async with session.request(method, self.base_url + path, timeout=limit, **kwargs) as response:
                if response.status >= 500:
                    raise BackendUnavailable(
                        self.base_url, f"{method} {path} answered HTTP {response.status}"
                    )
                yield response
        except TimeoutError as exc:
            seconds = limit.total or limit.sock_read or self.backend.timeout_s
            raise BackendUnavailable(self.base_url, f"{method} {path} timed out after {seconds:g}s") from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(self.base_url, f"{method} {path} failed: {_describe(exc)}") from exc

    async def _json_body(self, response: aiohttp.ClientResponse, what: str) -> Any:
        if response.status != 200:
            raise BadResponse(self.base_url, f"{what} answered HTTP {response.status}", response.status)
        raw = await response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise BadResponse(self.base_url, f"{what} did not answer JSON: {trim(raw, 80)}") from None

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self._open("GET", path, params=params) as response:
            return await self._json_body(response, f"GET {path}")

    async def _post_expect_ok(self, path: str, body: Mapping[str, Any]) -> None:
        async with self._open("POST", path, json=body) as response:
            if response.status != 200:
                raise BadResponse(
                    self.base_url, f"POST {path} answered HTTP {response.status}", response.status
                )

    # ----------------------------------------------------------------- prompts

    async def queue_prompt(
        self, graph: Mapping[str, Any], prompt_id: str | None = None, *, front: bool = False
    ) -> QueuedPrompt:
        """Post an API-format graph; return ComfyUI's receipt.

        Choose `prompt_id` (see `new_prompt_id()`) and persist it before calling, so a crash
        between posting and storing the answer loses nothing. The WebSocket is opened first.
        Raises PromptRejected (HTTP 400) or BackendUnavailable.
        """
        if prompt_id is None:
            prompt_id = new_prompt_id()
        elif not is_prompt_id(prompt_id):
            raise ValueError(f"prompt_id must be a lowercase UUID string, got {prompt_id!r}")
        await self.connect()
        body: dict[str, Any] = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        if front:
            body["front"] = True
        try:
            data = await self._post_prompt(body)
        except PromptRejected as exc:
            watch = self._watches.get(prompt_id)
            if watch is not None:
                watch._finish(Outcome(prompt_id, OutcomeStatus.FAILED, reason=str(exc)))
            raise
        except BackendUnavailable:
            # ComfyUI may have queued it before the failure: let /queue and /history decide.
            self._mark_posted(prompt_id)
            raise
        try:
            queued = QueuedPrompt.model_validate(data)
        except ValidationError as exc:
            raise BadResponse(self.base_url, f"unexpected answer to POST /prompt: {trim(data, 120)}") from exc
        if queued.node_errors:
            log.warning(
                "ComfyUI at %s skipped invalid outputs of %s: %s",
                self.base_url,
                prompt_id,
                trim(queued.node_errors, 300),
            )
        if queued.prompt_id != prompt_id:
            # ComfyUI before prompt_id support ignores ours: follow the id it chose.
            log.warning(
                "ComfyUI at %s ignored prompt id %s and used %s", self.base_url, prompt_id, queued.prompt_id
            )
            self._rekey(prompt_id, queued.prompt_id)
        self._mark_posted(queued.prompt_id)
        return queued

    async def _post_prompt(self, body: Mapping[str, Any]) -> Any:
        async with self._open("POST", "/prompt", json=body) as response:
            if response.status == 400:
                raw = await response.read()
                try:
                    rejection: object = json.loads(raw)
                except ValueError:
                    rejection = raw.decode("utf-8", "replace")
                raise PromptRejected.from_body(rejection)
            return await self._json_body(response, "POST /prompt")

    def _mark_posted(self, prompt_id: str) -> None:
        self._posted[prompt_id] = None
        while len(self._posted) > 4096:
            self._posted.popitem(last=False)
        watch = self._watches.get(prompt_id)
        if watch is not None:
            watch.posted = True
            watch.last_activity = self._clock()

    def _rekey(self, old: str, new: str) -> None:
        watch = self._watches.pop(old, None)
        if watch is None:
            return
        watch.prompt_id = new
        self._watches[new] = watch
        for event in self._orphans.take(new):
            watch._deliver(event)

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The history entry of a finished prompt, or None while it is queued, running or unknown."""
        data = await self._get_json(f"/history/{quote(prompt_id, safe='')}")
        if not isinstance(data, dict) or prompt_id not in data:
            return None
        return HistoryEntry.from_wire(prompt_id, data[prompt_id])

    async def history_all(self, max_items: int | None = None) -> dict[str, HistoryEntry]:
        """The newest `max_items` history entries (all when None), oldest first."""
        params = {"max_items": str(max_items)} if max_items is not None else None
        data = await self._get_json("/history", params)
        if not isinstance(data, dict):
            raise BadResponse(self.base_url, "GET /history did not answer an object")
        return {str(key): HistoryEntry.from_wire(str(key), value) for key, value in data.items()}

    async def queue(self) -> QueueState:
        """What runs and what waits, next first."""
        return QueueState.from_wire(await self._get_json("/queue"))

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt `prompt_id` if it is running now; nothing happens otherwise.

        There is deliberately no way to send ComfyUI's global interrupt: it stops whatever runs,
        whoever queued it.
        """
        if not isinstance(prompt_id, str) or not prompt_id.strip():
            raise ValueError("interrupt needs a prompt id; a global interrupt would stop anyone's job")
        await self._post_expect_ok("/interrupt", {"prompt_id": prompt_id})

    async def delete_pending(self, prompt_ids: Iterable[str]) -> None:
        """Remove prompts that wait in ComfyUI's queue (running ones are not touched)."""
        ids = [prompt_id for prompt_id in prompt_ids if prompt_id]
        if ids:
            await self._post_expect_ok("/queue", {"delete": ids})

    async def cancel(self, prompt_id: str) -> None:
        """Cancel a prompt wherever it is: delete it if pending, interrupt it if running.

        Deleting first and interrupting second leaves no gap for a prompt that starts in between.
        A watch on the prompt ends as Interrupted (with reason "cancelled before it started" when
        it never ran).
        """
        watch = self._watches.get(prompt_id)
        if watch is not None:
            watch.cancel_requested = True
        await self.delete_pending([prompt_id])
        await self.interrupt(prompt_id)
        if watch is not None and watch.posted:
            await self._reconcile([watch])

    # ----------------------------------------------------------------- files

    async def download(
        self, filename: str, subfolder: str = "", type: str = "output", *, max_bytes: int | None = None
    ) -> bytes:
        """Fetch one file through `/view`, streamed, refusing more than `max_bytes`."""
        limit = max_bytes or self._max_download
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        async with self._open("GET", "/view", params=params, limits=self._stream_timeout) as response:
            if response.status == 404:
                raise BadResponse(self.base_url, f"ComfyUI has no {type} file {filename!r}", 404)
            if response.status != 200:
                raise BadResponse(
                    self.base_url, f"GET /view answered HTTP {response.status}", response.status
                )
            if response.content_length is not None and response.content_length > limit:
                raise BadResponse(
                    self.base_url, f"{filename!r} is {response.content_length} bytes, over {limit}"
                )
            data = bytearray()
            async for chunk in response.content.iter_chunked(256 * 1024):
                data += chunk
                if len(data) > limit:
                    raise BadResponse(self.base_url, f"{filename!r} is larger than {limit} bytes")
            return bytes(data)

    async def download_image(self, ref: ImageRef, *, max_bytes: int | None = None) -> bytes:
        """Fetch an image listed in a prompt's outputs."""
        return await self.download(ref.filename, ref.subfolder, ref.type, max_bytes=max_bytes)

    async def upload_image(
        self,
        data: bytes,
        filename: str,
        overwrite: bool = True,
        *,
        subfolder: str = "",
        image_type: str = "input",
    ) -> UploadedImage:
        """Upload an image for LoadImage; use `result.load_image_name` in the graph."""
        if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
            raise ValueError(f"upload needs a plain file name, got {filename!r}")
        form = aiohttp.FormData()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form.add_field("image", data, filename=filename, content_type=content_type)
        form.add_field("type", image_type)
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true" if overwrite else "false")
        async with self._open("POST", "/upload/image", data=form) as response:
            body = await self._json_body(response, "POST /upload/image")
        try:
            return UploadedImage.model_validate(body)
        except ValidationError as exc:
            raise BadResponse(self.base_url, f"unexpected upload answer {trim(body, 120)}") from exc

    # ----------------------------------------------------------------- server info

    async def system_stats(self) -> SystemStats:
        """Versions, RAM and devices; a cheap health check."""
        data = await self._get_json("/system_stats")
        try:
            return SystemStats.model_validate(data)
        except ValidationError as exc:
            raise BadResponse(self.base_url, "unexpected /system_stats answer") from exc

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """Node definitions (all, or one class): inputs, their limits and choices such as checkpoints."""
        path = "/object_info" if node_class is None else f"/object_info/{quote(node_class, safe='')}"
        data = await self._get_json(path)
        if not isinstance(data, dict):
            raise BadResponse(self.base_url, f"GET {path} did not answer an object")
        return data

    async def features(self) -> dict[str, Any]:
        """Server feature flags (`{}` on versions without `/features`)."""
        async with self._open("GET", "/features") as response:
            if response.status == 404:
                return {}
            data = await self._json_body(response, "GET /features")
        return data if isinstance(data, dict) else {}

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
                async with asyncio.timeout(self.backend.timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                raise BackendUnavailable(self.base_url, "the WebSocket is down and reconnecting") from None

    async def _open_socket(self) -> aiohttp.ClientWebSocketResponse:
        session = self._http()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self.backend.timeout_s):
                ws = await session.ws_connect(
                    self._ws_url(), heartbeat=self._heartbeat, max_msg_size=self._max_ws_message
                )
                if self._preview_metadata:
                    # Must be the first message; servers without feature flags ignore it.
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if ws is not None:
                await ws.close()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(self.base_url, "the WebSocket did not open in time") from exc
            raise BackendUnavailable(self.base_url, f"the WebSocket did not open: {_describe(exc)}") from exc
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
                self._spawn(self._reconcile(list(self._watches.values())))
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
            watch._deliver(event)
        else:
            self._orphans.add(event)

    def _on_run_ended(self, prompt_id: str) -> None:
        if self._running == prompt_id:
            self._running = None
        watch = self._watches.get(prompt_id)
        if watch is not None and not watch.done:
            # The terminal frame was missed, or outputs must come from history after a gap.
            watch.posted = True
            self._spawn(self._reconcile([watch]))

    # ----------------------------------------------------------------- watches and reconciliation

    def watch(self, prompt_id: str) -> PromptWatch:
        """The watch of `prompt_id` (one per prompt id); create it before `queue_prompt`."""
        existing = self._watches.get(prompt_id)
        if existing is not None:
            return existing
        watch = PromptWatch(self, prompt_id, self._watch_queue_size, self._clock)
        watch.posted = prompt_id in self._posted
        self._watches[prompt_id] = watch
        for event in self._orphans.take(prompt_id):
            watch._deliver(event)
        return watch

    async def reattach(self, prompt_id: str) -> PromptWatch:
        """Watch a prompt posted earlier (e.g. before a restart): finished ones end from /history."""
        await self.connect()
        watch = self.watch(prompt_id)
        watch.posted = True
        await self._reconcile([watch])
        return watch

    def _forget(self, watch: PromptWatch) -> None:
        if self._watches.get(watch.prompt_id) is watch:
            del self._watches[watch.prompt_id]

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background check of %s failed", self.base_url, exc_info=task.exception())

    async def _reconcile(self, watches: list[PromptWatch]) -> None:
        """Settle watches from /queue and /history: finished ones end, vanished ones are lost."""
        targets = [watch for watch in watches if watch.posted and not watch.done]
        if not targets:
            return
        try:
            state = await self.queue()
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
                entry = await self.history(watch.prompt_id)
            except ComfyError as exc:
                log.warning("cannot read the history of %s: %s", watch.prompt_id, exc)
                continue
            if watch.done:
                continue
            if entry is not None:
                watch._finish(outcome_from_history(entry))
            elif watch.success_seen:
                watch._finish(Outcome(watch.prompt_id, OutcomeStatus.SUCCEEDED, dict(watch._outputs)))
            elif watch.cancel_requested:
                reason = "cancelled before it started"
                watch._finish(Outcome(watch.prompt_id, OutcomeStatus.INTERRUPTED, reason=reason))
            else:
                reason = (
                    f"ComfyUI at {self.base_url} no longer knows prompt {watch.prompt_id}: it is not "
                    "queued, not running and not in the history (was the server restarted?)"
                )
                log.warning("%s", reason)
                watch._finish(Outcome(watch.prompt_id, OutcomeStatus.LOST, reason=reason))

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
            await self._reconcile(idle)
            silent = now - self._last_frame_at >= interval
            if silent and self._ws is not None and any(not watch.done for watch in idle):
                # ComfyUI stops routing to a client id when an older socket of that id closes late;
                # reconnecting registers this socket again.
                log.warning(
                    "no frame from %s for %.0fs while prompts run; reconnecting", self.base_url, interval
                )
                await self._ws.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    return trim(text, 200)
