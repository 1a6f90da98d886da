"""Async client of one ComfyUI server: its HTTP calls, plus its WebSocket (comfy.event_socket) and watches."""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from comfy.event_socket import EventSocket, describe_error, exponential_backoff
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
from comfy.outcome import Outcome, OutcomeStatus
from comfy.profiles import BackendConfig
from comfy.prompt_watch import PromptWatch

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
        self._session = session
        self._owns_session = session is None
        self._max_download = max_download_bytes
        self._timeout = aiohttp.ClientTimeout(total=backend.timeout_s)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=backend.timeout_s, sock_read=backend.timeout_s
        )
        self._closed = False
        self._socket = EventSocket(
            self,
            self._http,
            client_id=self.client_id,
            timeout_s=backend.timeout_s,
            backoff=backoff,
            preview_metadata=preview_metadata,
            heartbeat_s=heartbeat_s,
            idle_reconcile_s=idle_reconcile_s,
            watch_queue_size=watch_queue_size,
            orphan_ttl_s=orphan_ttl_s,
            max_message_bytes=max_ws_message_bytes,
            clock=clock,
        )

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._socket.connected

    @property
    def reconnects(self) -> int:
        """How many times the WebSocket was opened again after it dropped."""
        return self._socket.reconnects

    @property
    def queue_remaining(self) -> int | None:
        """The server's queue size, as its last `status` frame said (None before the first)."""
        return self._socket.queue_remaining

    @property
    def server_features(self) -> Mapping[str, Any]:
        """The server's feature flags, as it answered on the WebSocket (`{}` until it does)."""
        return self._socket.server_features

    async def connect(self) -> None:
        """Open the WebSocket if needed (idempotent); BackendUnavailable when it cannot be opened."""
        await self._socket.connect()

    async def disconnect(self) -> None:
        """Close the WebSocket and stop reconnecting, keeping the client usable: `connect()` opens it again.

        For a bot process that stops driving this server (another process took it over, with the same
        client id: ComfyUI keeps one socket per client id, so two would take it from each other).
        """
        await self._socket.disconnect()

    async def close(self) -> None:
        """Close the socket, end every watch, and close the HTTP session if this client created it."""
        self._closed = True
        await self._socket.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def watch(self, prompt_id: str) -> PromptWatch:
        """The watch of `prompt_id` (one per prompt id); create it before `queue_prompt`."""
        return self._socket.watch(prompt_id)

    async def reattach(self, prompt_id: str) -> PromptWatch:
        """Watch a prompt posted earlier (e.g. before a restart): finished ones end from /history."""
        return await self._socket.reattach(prompt_id)

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
            raise BackendUnavailable(self.base_url, f"{method} {path} failed: {describe_error(exc)}") from exc

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
            watch = self._socket.watching(prompt_id)
            if watch is not None:
                watch.finish(Outcome(prompt_id, OutcomeStatus.FAILED, reason=str(exc)))
            raise
        except BackendUnavailable:
            # ComfyUI may have queued it before the failure: let /queue and /history decide.
            self._socket.mark_posted(prompt_id)
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
            self._socket.rekey(prompt_id, queued.prompt_id)
        self._socket.mark_posted(queued.prompt_id)
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
        watch = self._socket.watching(prompt_id)
        if watch is not None:
            watch.cancel_requested = True
        await self.delete_pending([prompt_id])
        await self.interrupt(prompt_id)
        if watch is not None and watch.posted:
            await self._socket.reconcile([watch])

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
