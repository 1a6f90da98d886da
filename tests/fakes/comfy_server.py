"""A fake ComfyUI on loopback: the recorded HTTP + WebSocket protocol, a FIFO executor and fault knobs.

Faithful to the frames recorded from ComfyUI 0.3.64 (tests/data/protocol): message order and shapes,
routing by client id, caching, validation errors, interrupts, history and `/view` files. Nodes are
not computed; images are flat-coloured PNGs of the size the graph asks for, except that loaded images
flow through scaling, ImageBlend/LatentBlend mix them by their factors, and a sampler below full denoise
returns the picture it was given.

    async with FakeComfyUI() as fake:
        client = ComfyClient(BackendConfig(name="fake", url=fake.url))
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import random
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
OBJECT_INFO_PATH = DATA_DIR / "object_info.json"
SYSTEM_STATS_PATH = DATA_DIR / "protocol" / "system_stats.json"

SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
DEFAULT_CHECKPOINTS = [
    "random_sd15_tiny.safetensors",
    "v1-5-pruned-emaonly.safetensors",
    "sd_xl_base_1.0.safetensors",
]
DEFAULT_UPSCALE_MODELS = ["RealESRGAN_x4plus.pth", "4x-UltraSharp.pth", "2x-AnimeSharp.pth"]
SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
_ERROR_500 = "500 Internal Server Error\n\nServer got itself in trouble"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TENSOR_DUMP = "tensor([[[[0., 0., 0., 0.],\n          [0., 0., 0., 0.],\n" + "          ...,\n" * 200


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


@dataclass
class _Item:
    number: float
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return value if isinstance(value, str) and value else None

    def wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


_FileKey = tuple[str, str, str]  # (type, subfolder, filename) of a file the fake holds


@dataclass(frozen=True)
class _Pic:
    """An IMAGE, LATENT or MASK flowing through the graph: its size and what colours it.

    `source` is the loaded file it shows; `mix` the files it shows blended, with their weights (what
    ImageBlend and LatentBlend make of loaded images)."""

    kind: str
    width: int
    height: int
    batch: int = 1
    channels: int = 3
    seed: int = 0
    color: int | None = None
    source: _FileKey | None = None
    mix: tuple[tuple[_FileKey, float], ...] = ()

    def shown(self) -> tuple[tuple[_FileKey, float], ...] | None:
        """The loaded files this picture shows with their weights; None when it shows no file."""
        if self.mix:
            return self.mix
        return ((self.source, 1.0),) if self.source is not None else None


@dataclass(frozen=True)
class _Opaque:
    """Any other value (MODEL, CLIP, CONDITIONING, ...)."""

    kind: str


class _Interrupted(Exception):
    def __init__(self, node_id: str, node_type: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id
        self.node_type = node_type


class _NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class _Run:
    item: _Item
    signatures: dict[str, str]
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)


class _ExecutionList:
    """ComfyUI's execution order: a topological dissolve from the outputs, output-friendly picks."""

    def __init__(
        self,
        graph: dict[str, Any],
        outputs: Iterable[str],
        is_cached: Callable[[str], bool],
        is_output: Callable[[str], bool],
    ) -> None:
        self._graph = graph
        self._is_cached = is_cached
        self._is_output = is_output
        self.pending: dict[str, None] = {}
        self._block_count: dict[str, int] = {}
        self._blocking: dict[str, dict[str, None]] = {}
        for node_id in outputs:
            self._add(node_id)

    def _add(self, start: str) -> None:
        stack = [start]
        links: list[tuple[str, str]] = []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = None
            self._block_count[node_id] = 0
            self._blocking[node_id] = {}
            if self._is_cached(node_id):
                continue
            for value in self._graph[node_id].get("inputs", {}).values():
                if _is_link(value):
                    if not self._is_cached(value[0]):
                        stack.append(value[0])
                    links.append((value[0], node_id))
        for source, target in links:
            if self._is_cached(source) or target in self._blocking[source]:
                continue
            self._blocking[source][target] = None
            self._block_count[target] += 1

    def stage(self) -> str:
        ready = [node_id for node_id in self.pending if self._block_count[node_id] == 0]
        if not ready:
            raise _NodeFailure("graph.DependencyCycleError", "Dependency cycle detected")
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(blocked) for blocked in self._blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self._blocking[node_id]:
                if any(self._is_output(next_blocked) for next_blocked in self._blocking[blocked]):
                    return node_id
        return ready[0]

    def pop(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self._blocking.pop(node_id):
            self._block_count[blocked] -= 1


def _load_object_info() -> dict[str, Any]:
    return json.loads(OBJECT_INFO_PATH.read_text(encoding="utf-8"))


class FakeComfyUI:
    """A ComfyUI server on 127.0.0.1 for tests.

    Knobs (plain attributes): `step_time` (seconds per sampler step), `node_time`, `preview` (send
    preview frames, as with --preview-method), `preview_size`, `fail_node` (node id or class that
    raises) with `fail_with` ((exception type, message)), `http_error` (answer every request, the
    WebSocket included, with this status), `fail_route(route, times)` (answer only one route, e.g.
    "POST /prompt", with 500, the next `times` requests or until healed), `hang_http` (never answer;
    `release_http()`),
    `checkpoints` and `upscale_models` (the file lists validation accepts), `ignore_prompt_id`.
    Faults and timing: `pause(node=None)` / `resume()` hold samplers before a step,
    `drop_sockets()`, `stop()` / `start()` (same port; prompts keep running meanwhile), `reset()`
    (a restarted server: queue, history and cache gone).
    Waiting without sleeps: `wait_started(id)`, `wait_finished(id)`, `wait_paused()`,
    `wait_until(predicate)`.
    Observations: `received_prompts` (graphs as posted), `received_bodies`, `executed_prompt_ids`,
    `failed_requests` (requests answered by `http_error` or `fail_route`),
    `interrupt_requests` (None for a global interrupt), `global_interrupts`, `deleted_prompt_ids`,
    `connections`, `connected_clients`, `requests`, `history_count()`, `file(name, ...)`.
    """

    def __init__(
        self,
        *,
        step_time: float = 0.001,
        preview: bool = False,
        object_info: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = 0
        self.wait_timeout = 5.0
        self.step_time = step_time
        self.node_time = 0.0
        self.preview = preview
        self.preview_size = 64
        self.fail_node: str | None = None
        self.fail_with: tuple[str, str] = (
            "RuntimeError",
            "Sizes of tensors must match except in dimension 0. Expected size 4 but got size 3 "
            "for tensor number 1 in the list.",
        )
        self.http_error: int | None = None
        self._route_faults: dict[str, tuple[int, int | None]] = {}
        self.hang_http = False
        self.ignore_prompt_id = False  # like ComfyUI before client-chosen prompt ids
        self.checkpoints: list[str] = list(DEFAULT_CHECKPOINTS)
        self.upscale_models: list[str] = list(DEFAULT_UPSCALE_MODELS)
        self.object_info = object_info if object_info is not None else _load_object_info()
        self.system_stats = json.loads(SYSTEM_STATS_PATH.read_text(encoding="utf-8"))

        self.received_prompts: list[dict[str, Any]] = []
        self.received_bodies: list[Any] = []
        self.executed_prompt_ids: list[str] = []
        self.finished_prompt_ids: list[str] = []
        self.interrupt_requests: list[str | None] = []
        self.deleted_prompt_ids: list[str] = []
        self.connections: list[str] = []
        self.requests: list[str] = []
        self.failed_requests: list[str] = []
        self.steps_done = 0

        self._number = 0
        self._pending: list[_Item] = []
        self._running: _Item | None = None
        self._last_node: str | None = None
        self._interrupt = False
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._files: dict[tuple[str, str, str], bytes] = {}
        self._counters: dict[tuple[str, str, str], int] = {}
        self._temp_prefix = "ComfyUI_temp_" + "".join(
            random.Random(7).choices("abcdefghijklmnopqrstuvwxyz", k=5)
        )
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._socket_flags: dict[str, dict[str, Any]] = {}
        self._live: dict[web.WebSocketResponse, web.Request] = {}
        self._outbox: asyncio.Queue[tuple[str, Any, str | None]] = asyncio.Queue()
        self._work = asyncio.Event()
        self._tick = asyncio.Event()
        self._paused = False
        self._pause_node: str | None = None
        self.paused_at: tuple[str, str, int] | None = None
        self._unhang = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._exec_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> FakeComfyUI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen (again, on the same port after `stop()`); start the executor."""
        if self._runner is None:
            self._unhang.clear()
            runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
            self._runner = runner
        if self._worker is None:
            self._worker = asyncio.create_task(self._work_loop(), name="fake-comfy-worker")
            self._publisher = asyncio.create_task(self._publish_loop(), name="fake-comfy-publisher")

    async def stop(self) -> None:
        """Stop listening (connections refused) and drop every socket; prompts keep running."""
        if self._runner is None:
            return
        self._unhang.set()
        await self.drop_sockets()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def close(self) -> None:
        """Stop listening and stop the executor."""
        await self.stop()
        tasks = [task for task in (self._worker, self._publisher, self._exec_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = self._publisher = self._exec_task = None

    def reset(self) -> None:
        """Forget the queue, the running prompt, the history and the cache, like a restarted server."""
        if self._exec_task is not None:
            self._exec_task.cancel()
        self._pending.clear()
        self._running = None
        self._last_node = None
        self._history.clear()
        self._cache.clear()
        self._number = 0
        self.paused_at = None
        self._notify()

    async def drop_sockets(self) -> None:
        """Cut every WebSocket abruptly (as a network failure would) and wait until they are gone."""
        sockets = list(self._live.items())
        for ws, request in sockets:
            transport = request.transport
            if transport is not None:
                transport.abort()
            else:
                await ws.close()
        await self.wait_until(lambda: not any(ws in self._live for ws, _ in sockets))

    # ------------------------------------------------------------------ test helpers

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (without polling) until `predicate()` is true; TimeoutError after `wait_timeout` s."""
        async with asyncio.timeout(self.wait_timeout):
            while not predicate():
                await self._tick.wait()

    async def wait_started(self, prompt_id: str) -> None:
        """Wait until `prompt_id` began executing."""
        await self.wait_until(lambda: prompt_id in self.executed_prompt_ids)

    async def wait_finished(self, prompt_id: str) -> None:
        """Wait until the last frame of `prompt_id` (`executing` null) was sent."""
        await self.wait_until(lambda: prompt_id in self.finished_prompt_ids)

    async def wait_paused(self) -> tuple[str, str, int]:
        """Wait until a paused sampler blocks; return (prompt_id, node_id, step about to run)."""
        await self.wait_until(lambda: self.paused_at is not None)
        assert self.paused_at is not None
        return self.paused_at

    def pause(self, node: str | None = None) -> None:
        """Make samplers (only node `node` when given) block before their next step until `resume()`.

        Calling it again with another node lets a sampler blocked elsewhere go on.
        """
        self._paused = True
        self._pause_node = node
        self._notify()

    def resume(self) -> None:
        """Let paused samplers continue."""
        self._paused = False
        self._pause_node = None
        self._notify()

    def _holds(self, node_id: str) -> bool:
        return self._paused and self._pause_node in (None, node_id)

    def fail_route(self, route: str, times: int | None = None, status: int = 500) -> None:
        """Answer `route` ("POST /prompt"; the /api prefix is ignored) with `status` before its handler runs.

        The next `times` requests fail (every one while None; `times=0` heals the route). Nothing is
        queued by a failed POST /prompt, as when ComfyUI's handler raises before queueing (an exception
        in validation or in a custom node's hook answers 500 "Server got itself in trouble").
        """
        if times == 0:
            self._route_faults.pop(route, None)
        else:
            self._route_faults[route] = (status, times)

    def _route_fault(self, line: str) -> int | None:
        method, _, path = line.partition(" ")
        route = f"{method} {path.removeprefix('/api')}"
        fault = self._route_faults.get(route)
        if fault is None:
            return None
        status, left = fault
        if left is not None:
            if left <= 1:
                del self._route_faults[route]
            else:
                self._route_faults[route] = (status, left - 1)
        return status

    def release_http(self) -> None:
        """Stop hanging: requests held by `hang_http` go on, new ones are answered."""
        self.hang_http = False
        self._unhang.set()

    def history_count(self) -> int:
        """Number of history entries."""
        return len(self._history)

    @property
    def global_interrupts(self) -> int:
        """How many `/interrupt` requests came without a prompt id."""
        return sum(1 for prompt_id in self.interrupt_requests if prompt_id is None)

    @property
    def connected_clients(self) -> list[str]:
        """Client ids that have a registered socket now."""
        return list(self._sockets)

    @property
    def pending_ids(self) -> list[str]:
        """Prompt ids waiting in the queue."""
        return [item.prompt_id for item in self._pending]

    @property
    def running_id(self) -> str | None:
        """The prompt id being executed."""
        return self._running.prompt_id if self._running else None

    def file(self, filename: str, subfolder: str = "", type: str = "output") -> bytes | None:
        """The bytes of a stored file (outputs, temp previews, uploads)."""
        return self._files.get((type, subfolder, filename))

    # ------------------------------------------------------------------ app

    def _make_app(self) -> web.Application:
        @web.middleware
        async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
            line = f"{request.method} {request.path}"
            self.requests.append(line)
            if self.hang_http:
                await self._unhang.wait()
            status = self.http_error if self.http_error is not None else self._route_fault(line)
            if status is not None:
                self.failed_requests.append(line)
                self._notify()
                text = _ERROR_500 if status == 500 else f"{status} fake failure"
                return web.Response(status=status, text=text)
            return await handler(request)

        app = web.Application(middlewares=[faults], client_max_size=104857600)
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/ws", self._ws_handler),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_item),
            ("POST", "/history", self._post_history),
            ("GET", "/view", self._get_view),
            ("POST", "/upload/image", self._post_upload),
            ("GET", "/system_stats", self._get_system_stats),
            ("GET", "/object_info", self._get_object_info),
            ("GET", "/object_info/{node_class}", self._get_object_info_node),
            ("GET", "/features", self._get_features),
        ]
        for prefix in ("/api", ""):
            for method, path, handler in routes:
                app.router.add_route(method, prefix + path, handler)
        return app

    # ------------------------------------------------------------------ sending

    def _send(self, event: str | int, data: Any, sid: str | None) -> None:
        """Queue a frame like ComfyUI's send_sync: sid None broadcasts, else only that client."""
        if isinstance(event, int):
            self._outbox.put_nowait(("bytes", struct.pack(">I", event) + data, sid))
        else:
            self._outbox.put_nowait(("text", json.dumps({"type": event, "data": data}), sid))

    def _send_routed(self, event: str, data: Any, sid: str | None) -> None:
        # ComfyUI sends execution messages only when the prompt has a client id.
        if sid is not None:
            self._send(event, data, sid)

    def _after_sent(self, callback: Callable[[], None]) -> None:
        self._outbox.put_nowait(("call", callback, None))

    def _send_status(self) -> None:
        self._send("status", {"status": self._queue_info()}, None)

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._pending) + (1 if self._running else 0)}}

    async def _publish_loop(self) -> None:
        while True:
            kind, payload, sid = await self._outbox.get()
            if kind == "call":
                payload()
                self._notify()
                continue
            if sid is None:
                targets = list(self._sockets.values())
            else:
                targets = [self._sockets[sid]] if sid in self._sockets else []
            for ws in targets:
                try:
                    if kind == "bytes":
                        await ws.send_bytes(payload)
                    else:
                        await ws.send_str(payload)
                except (ConnectionError, RuntimeError) as exc:
                    log.debug("fake ComfyUI send failed: %s", exc)

    # ------------------------------------------------------------------ WebSocket

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)  # a reconnect replaces the old socket
        else:
            sid = uuid.uuid4().hex
        self._sockets[sid] = ws
        self._socket_flags[sid] = {}
        self._live[ws] = request
        self.connections.append(sid)
        self._notify()
        try:
            await ws.send_json({"type": "status", "data": {"status": self._queue_info(), "sid": sid}})
            running = self._running
            if running is not None and running.client_id == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            first = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data")
                    self._socket_flags[sid] = flags if isinstance(flags, dict) else {}
                    await ws.send_json({"type": "feature_flags", "data": SERVER_FEATURES})
                first = False
        except (ConnectionError, RuntimeError):
            pass
        finally:
            # Like ComfyUI: pops whatever socket holds this id now, even a newer one.
            self._sockets.pop(sid, None)
            self._socket_flags.pop(sid, None)
            self._live.pop(ws, None)
            self._notify()
        return ws

    # ------------------------------------------------------------------ HTTP handlers

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text=_ERROR_500)
        self.received_bodies.append(body)
        if not isinstance(body, dict):
            return web.Response(status=500, text=_ERROR_500)
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        if "prompt" not in body:
            return self._rejected(_error("no_prompt", "No prompt provided", "No prompt provided"))
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            return web.Response(status=500, text=_ERROR_500)
        prompt_id = None if self.ignore_prompt_id else body.get("prompt_id")
        if prompt_id is None:
            prompt_id = str(uuid.uuid4())
        elif not isinstance(prompt_id, str) or not _UUID.match(prompt_id):
            return self._rejected(
                _error(
                    "invalid_prompt_id",
                    "prompt_id must be a valid UUID",
                    "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                    "omit it to let the server generate one",
                )
            )
        self.received_prompts.append(json.loads(json.dumps(prompt)))
        error, outputs, node_errors = self._validate_prompt(prompt)
        if error is not None:
            return self._rejected(error, node_errors)
        extra_data = dict(body["extra_data"]) if isinstance(body.get("extra_data"), dict) else {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        item = _Item(number, prompt_id, prompt, extra_data, outputs)
        self._pending.append(item)
        self._pending.sort(key=lambda queued: queued.number)
        self._send_status()
        self._work.set()
        self._notify()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _rejected(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> web.Response:
        return web.json_response({"error": error, "node_errors": node_errors or {}}, status=400)

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running.wire()] if self._running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [item.wire() for item in self._pending]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text=_ERROR_500)
        if isinstance(body, dict):
            if body.get("clear"):
                self._pending.clear()
                self._send_status()
            for prompt_id in body.get("delete") or ():
                before = len(self._pending)
                self._pending = [item for item in self._pending if item.prompt_id != prompt_id]
                if len(self._pending) != before:
                    self.deleted_prompt_ids.append(prompt_id)
                    self._send_status()
        self._notify()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id:
            self.interrupt_requests.append(str(prompt_id))
            if self._running is not None and self._running.prompt_id == prompt_id:
                self._interrupt = True
            else:
                log.info("Prompt %s is not currently running, skipping interrupt", prompt_id)
        else:
            self.interrupt_requests.append(None)
            self._interrupt = True
        self._notify()
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        items = list(self._history.items())
        max_items = request.query.get("max_items")
        if max_items is not None:
            items = items[-int(max_items) :] if int(max_items) > 0 else []
        return web.json_response(dict(items))

    async def _get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, dict):
            if body.get("clear"):
                self._history.clear()
            for prompt_id in body.get("delete") or ():
                self._history.pop(prompt_id, None)
        return web.Response(status=200)

    async def _get_view(self, request: web.Request) -> web.Response:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        filename, annotated = _split_annotation(filename)
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        kind = annotated or request.query.get("type", "output")
        if kind not in ("output", "input", "temp"):
            return web.Response(status=400)
        subfolder = request.query.get("subfolder", "")
        if ".." in subfolder or subfolder.startswith("/"):
            return web.Response(status=403)
        data = self._files.get((kind, subfolder, os.path.basename(filename)))
        if data is None:
            return web.Response(status=404)
        content_type = "image/jpeg" if filename.lower().endswith((".jpg", ".jpeg")) else "image/png"
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-Disposition": f'filename="{os.path.basename(filename)}"'},
        )

    async def _post_upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        subfolder = _clean_subfolder(str(post.get("subfolder") or ""))
        if kind not in ("input", "temp", "output") or ".." in subfolder or subfolder.startswith("/"):
            return web.Response(status=400)
        filename = os.path.basename(image.filename)
        data = image.file.read()
        if post.get("overwrite") not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            counter = 1
            while (kind, subfolder, filename) in self._files:
                if self._files[(kind, subfolder, filename)] == data:
                    break
                filename = f"{stem} ({counter}){ext}"
                counter += 1
        self._files[(kind, subfolder, filename)] = data
        self._notify()
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _get_system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.system_stats)

    async def _get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response({name: self._spec(name) for name in self.object_info})

    async def _get_object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self._spec(name)} if name in self.object_info else {})

    async def _get_features(self, request: web.Request) -> web.Response:
        return web.json_response(SERVER_FEATURES)

    # ------------------------------------------------------------------ validation

    def _spec(self, class_type: str) -> dict[str, Any]:
        """The node definition, with the file lists (checkpoints, uploads) of this fake."""
        spec = self.object_info[class_type]
        lists = {
            ("CheckpointLoaderSimple", "ckpt_name"): self.checkpoints,
            ("UpscaleModelLoader", "model_name"): self.upscale_models,
            ("LoadImage", "image"): sorted(
                f"{sub}/{name}" if sub else name for kind, sub, name in self._files if kind == "input"
            ),
        }
        patched = [(name, files) for (cls, name), files in lists.items() if cls == class_type]
        if not patched:
            return spec
        spec = json.loads(json.dumps(spec))
        for name, files in patched:
            info = spec.get("input", {}).get("required", {}).get(name)
            if isinstance(info, list) and info:
                info[0] = list(files)
        return spec

    def _is_output(self, class_type: str) -> bool:
        return bool(self.object_info.get(class_type, {}).get("output_node"))

    def _validate_prompt(
        self, prompt: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                message = "Cannot execute because a node is missing the class_type property."
                return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            class_type = node["class_type"]
            if class_type not in self.object_info:
                message = f"Cannot execute because node {class_type} does not exist."
                return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            if self._is_output(class_type):
                outputs.append(node_id)
        if not outputs:
            return _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
        validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
        good: list[str] = []
        failures: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            valid, reasons = self._validate_node(prompt, output, validated)
            if valid:
                good.append(output)
                continue
            failures.append((output, reasons))
            for node_id, (node_valid, node_reasons) in validated.items():
                if not node_valid and node_reasons:
                    entry = node_errors.setdefault(
                        node_id,
                        {
                            "errors": node_reasons,
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        },
                    )
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errors in failures for e in errors)
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return error, [], node_errors
        return None, good, node_errors

    def _validate_node(
        self, prompt: dict[str, Any], node_id: str, validated: dict[str, tuple[bool, list[dict[str, Any]]]]
    ) -> tuple[bool, list[dict[str, Any]]]:
        if node_id in validated:
            return validated[node_id]
        node = prompt[node_id]
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        spec = self._spec(node["class_type"]).get("input", {})
        required: dict[str, Any] = spec.get("required") or {}
        optional: dict[str, Any] = spec.get("optional") or {}
        errors: list[dict[str, Any]] = []
        valid = True
        for name in required:
            if name not in inputs:
                errors.append(
                    _error("required_input_missing", "Required input is missing", name, input_name=name)
                )
        for name, info in {**required, **optional}.items():
            if name not in inputs:
                continue
            value = inputs[name]
            input_type = info[0] if isinstance(info, list) and info else "*"
            extra = info[1] if isinstance(info, list) and len(info) > 1 and isinstance(info[1], dict) else {}
            if isinstance(value, list):
                if not _is_link(value) or value[0] not in prompt:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            input_name=name,
                            input_config=info,
                            received_value=value,
                        )
                    )
                    continue
                source_outputs = self.object_info.get(prompt[value[0]].get("class_type"), {}).get(
                    "output", []
                )
                if value[1] >= len(source_outputs):
                    errors.append(
                        _error("bad_linked_input", "Linked output slot does not exist", name, input_name=name)
                    )
                    continue
                received = source_outputs[value[1]]
                if not _types_match(received, input_type):
                    details = f"{name}, received_type({received}) mismatch input_type({input_type})"
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            details,
                            input_name=name,
                            input_config=info,
                            received_type=received,
                            linked_node=value,
                        )
                    )
                    continue
                if not self._validate_node(prompt, value[0], validated)[0]:
                    valid = False
                continue
            if node["class_type"] == "LoadImage" and name == "image":
                if self._find_input_file(value) is None:
                    errors.append(
                        _error(
                            "custom_validation_failed",
                            "Custom validation failed for node",
                            f"{name} - Invalid image file: {value}",
                            input_name=name,
                        )
                    )
                continue
            errors.extend(_check_literal(name, value, input_type, extra, info))
        result = (not errors and valid, errors)
        validated[node_id] = result
        return result

    # ------------------------------------------------------------------ executor

    async def _work_loop(self) -> None:
        while True:
            while not self._pending:
                self._work.clear()
                await self._work.wait()
            item = self._pending.pop(0)
            self._running = item
            self._send_status()
            task = asyncio.create_task(self._execute(item))
            self._exec_task = task
            try:
                await asyncio.wait({task})
            finally:
                if not task.done():
                    task.cancel()
                self._exec_task = None
                if self._running is item:
                    self._running = None
                    self._last_node = None

    async def _execute(self, item: _Item) -> None:
        prompt_id, sid = item.prompt_id, item.client_id
        self._interrupt = False
        self.executed_prompt_ids.append(prompt_id)
        self._notify()
        messages: list[list[Any]] = []

        def routed(event: str, data: dict[str, Any], keep: bool = False) -> None:
            self._send_routed(event, data, sid)
            if keep:
                messages.append([event, data])

        routed("execution_start", {"prompt_id": prompt_id, "timestamp": _now_ms()}, keep=True)
        signatures = self._signatures(item.graph)
        wanted = set(signatures.values())
        self._cache = {key: value for key, value in self._cache.items() if key in wanted}
        cached = [node_id for node_id in item.graph if signatures[node_id] in self._cache]
        routed(
            "execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": _now_ms()}, keep=True
        )
        run = _Run(item, signatures)
        status, completed = "success", True
        try:
            await self._run_graph(run)
        except _Interrupted as exc:
            status, completed = "error", False
            data = {
                "prompt_id": prompt_id,
                "node_id": exc.node_id,
                "node_type": exc.node_type,
                "executed": list(run.executed),
                "timestamp": _now_ms(),
            }
            routed("execution_interrupted", data, keep=True)
        except _NodeFailure as exc:
            status, completed = "error", False
            node_id = self._last_node or ""
            data = {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": item.graph.get(node_id, {}).get("class_type", ""),
                "executed": list(run.executed),
                "exception_message": exc.message + "\n",
                "exception_type": exc.exception_type,
                "traceback": [
                    '  File "/opt/ComfyUI/execution.py", line 496, in execute\n    output_data = await '
                    "get_output_data(prompt_id, unique_id, obj, input_data_all)\n",
                    '  File "/opt/ComfyUI/nodes.py", line 1857, in batch\n    s = torch.cat((image1, '
                    "image2), dim=0)\n",
                ],
                "current_inputs": {"image1": [_TENSOR_DUMP], "image2": [_TENSOR_DUMP]},
                "current_outputs": list(item.graph),
                "timestamp": _now_ms(),
            }
            routed("execution_error", data, keep=True)
        else:
            routed("execution_success", {"prompt_id": prompt_id, "timestamp": _now_ms()}, keep=True)
        ui = run.ui if completed else {}
        self._history[prompt_id] = {
            "prompt": item.wire(),
            "outputs": ui,
            "status": {"status_str": status, "completed": completed, "messages": messages},
            "meta": {
                node_id: {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
                for node_id in ui
            },
        }
        self._running = None
        self._last_node = None
        self._send_status()
        routed("executing", {"node": None, "prompt_id": prompt_id})
        self._after_sent(lambda: self.finished_prompt_ids.append(prompt_id))

    async def _run_graph(self, run: _Run) -> None:
        graph, prompt_id, sid = run.item.graph, run.item.prompt_id, run.item.client_id

        def cached(node_id: str) -> bool:
            return run.signatures[node_id] in self._cache

        order = _ExecutionList(
            graph, run.item.outputs, cached, lambda node_id: self._is_output(graph[node_id]["class_type"])
        )
        while order.pending:
            node_id = order.stage()
            class_type = graph[node_id]["class_type"]
            if cached(node_id):
                outputs, ui = self._cache[run.signatures[node_id]]
                run.values[node_id] = outputs
                if ui is not None:
                    run.ui[node_id] = ui
                    self._send_routed("executed", self._executed(node_id, ui, prompt_id), sid)
                self._progress_state(run, node_id, 1, 1, "finished")
                order.pop(node_id)
                continue
            if self._interrupt:
                raise _Interrupted(node_id, class_type)
            self._progress_state(run, node_id, 0.0, 1.0, "running")
            self._last_node = node_id
            self._send_routed(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, sid
            )
            outputs, ui = await self._run_node(run, node_id)
            self._cache[run.signatures[node_id]] = (outputs, ui)
            run.values[node_id] = outputs
            run.executed.append(node_id)
            if ui is not None:
                run.ui[node_id] = ui
                self._send_routed("executed", self._executed(node_id, ui, prompt_id), sid)
            state = run.progress[node_id]
            self._progress_state(run, node_id, state["max"], state["max"], "finished")
            order.pop(node_id)

    @staticmethod
    def _executed(node_id: str, ui: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        return {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id}

    def _progress_state(self, run: _Run, node_id: str, value: float, maximum: float, state: str) -> None:
        prompt_id = run.item.prompt_id
        run.progress[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        self._send("progress_state", {"prompt_id": prompt_id, "nodes": run.progress}, run.item.client_id)

    def _signatures(self, graph: dict[str, Any]) -> dict[str, str]:
        memo: dict[str, str] = {}

        def signature(node_id: str, path: tuple[str, ...]) -> str:
            if node_id in memo:
                return memo[node_id]
            if node_id in path:
                return uuid.uuid4().hex  # a cycle never matches the cache
            node = graph[node_id]
            parts = []
            for name, value in sorted(node.get("inputs", {}).items()):
                if _is_link(value) and value[0] in graph:
                    parts.append([name, signature(value[0], (*path, node_id)), value[1]])
                else:
                    parts.append([name, value])
            if node["class_type"] == "LoadImage":
                found = self._find_input_file(node.get("inputs", {}).get("image"))
                parts.append(hashlib.sha1(self._files.get(found, b"")).hexdigest() if found else "")
            text = json.dumps([node["class_type"], parts], sort_keys=True, default=str)
            memo[node_id] = hashlib.sha1(text.encode()).hexdigest()
            return memo[node_id]

        return {node_id: signature(node_id, ()) for node_id in graph}

    # ------------------------------------------------------------------ nodes

    def _input(self, run: _Run, node_id: str, name: str) -> Any:
        value = run.item.graph[node_id].get("inputs", {}).get(name)
        if _is_link(value):
            source, slot = value
            outputs = run.values.get(source)
            if outputs is None:
                outputs = self._cache[run.signatures[source]][0]
            return outputs[slot] if slot < len(outputs) else None
        return value

    async def _run_node(self, run: _Run, node_id: str) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        graph = run.item.graph
        class_type = graph[node_id]["class_type"]
        inputs = {name: self._input(run, node_id, name) for name in graph[node_id].get("inputs", {})}
        if self.fail_node is not None and self.fail_node in (node_id, class_type):
            raise _NodeFailure(*self.fail_with)
        await asyncio.sleep(self.node_time)
        output_types = self.object_info[class_type].get("output", [])
        pics = [value for value in inputs.values() if isinstance(value, _Pic)]
        outputs: list[Any] = []
        for output_type in output_types:
            same = next((pic for pic in pics if pic.kind == output_type), None)
            if same is None and pics and output_type in ("IMAGE", "LATENT", "MASK"):
                same = replace(pics[0], kind=output_type, channels=1 if output_type == "MASK" else 3)
            outputs.append(same if same is not None else _Opaque(str(output_type)))
        ui: dict[str, Any] | None = None
        special = _transform(class_type, inputs, self._upscale_factor)
        if special is not None:
            outputs[: len(special)] = special
        if class_type == "LoadImage":
            outputs[:2] = self._load_image(inputs.get("image"))
        elif class_type == "UpscaleModelLoader":
            outputs[:1] = [_Opaque(f"UPSCALE_MODEL {inputs.get('model_name')}")]
        elif class_type in SAMPLERS:
            latent = inputs.get("latent_image")
            latent = latent if isinstance(latent, _Pic) else _Pic("LATENT", 512, 512)
            await self._sample(run, node_id, self._steps(run, node_id, inputs), latent)
            denoise = inputs.get("denoise", 1.0)
            seed = int(inputs.get("seed", inputs.get("noise_seed", 0)) or 0)
            partial = isinstance(denoise, int | float) and denoise < 1.0
            # Below full denoise the result still looks like the input; the fake shows the input itself.
            keep, mix = (latent.source, latent.mix) if partial else (None, ())
            sampled = replace(latent, seed=seed, color=None, source=keep, mix=mix)
            outputs[: len(outputs)] = [sampled] * len(outputs)
        elif class_type == "SaveImage":
            ui = {
                "images": self._save(
                    inputs.get("images"), str(inputs.get("filename_prefix") or "ComfyUI"), "output", graph
                )
            }
        elif class_type == "PreviewImage":
            ui = {"images": self._save(inputs.get("images"), self._temp_prefix, "temp", graph)}
        elif class_type == "SaveImageWebsocket":
            self._send_ws_images(run, node_id, inputs.get("images"))
        return tuple(outputs), ui

    def _steps(self, run: _Run, node_id: str, inputs: dict[str, Any]) -> int:
        class_type = run.item.graph[node_id]["class_type"]
        if class_type == "KSamplerAdvanced":
            steps = int(inputs.get("steps") or 0)
            end = min(int(inputs.get("end_at_step", steps)), steps)
            return max(0, end - int(inputs.get("start_at_step") or 0))
        if class_type in ("SamplerCustom", "SamplerCustomAdvanced"):
            for value in run.item.graph[node_id].get("inputs", {}).values():
                if _is_link(value):
                    steps = run.item.graph[value[0]].get("inputs", {}).get("steps")
                    if isinstance(steps, int):
                        return steps
            return 20
        return int(inputs.get("steps") or 20)

    async def _sample(self, run: _Run, node_id: str, steps: int, latent: _Pic) -> None:
        prompt_id, sid = run.item.prompt_id, run.item.client_id
        class_type = run.item.graph[node_id]["class_type"]
        wants_metadata = sid is not None and bool(
            self._socket_flags.get(sid, {}).get("supports_preview_metadata")
        )
        for step in range(1, steps + 1):
            if self._interrupt:
                raise _Interrupted(node_id, class_type)
            while self._holds(node_id):
                self.paused_at = (prompt_id, node_id, step)
                self._notify()
                await self._tick.wait()
            self.paused_at = None
            if self._interrupt:
                raise _Interrupted(node_id, class_type)
            await asyncio.sleep(self.step_time)
            self._progress_state(run, node_id, step, steps, "running")
            preview = self._preview_jpeg(latent, step, steps) if self.preview else None
            if preview is not None and wants_metadata:
                meta = json.dumps(
                    {
                        "node_id": node_id,
                        "prompt_id": prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": "image/jpeg",
                    }
                ).encode()
                self._send(4, struct.pack(">I", len(meta)) + meta + preview, sid)
            self._send(
                "progress", {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id}, sid
            )
            if preview is not None and not wants_metadata:
                self._send(1, struct.pack(">I", 1) + preview, sid)
            self.steps_done += 1
            self._notify()

    def _send_ws_images(self, run: _Run, node_id: str, images: Any) -> None:
        if not isinstance(images, _Pic):
            return
        prompt_id, sid = run.item.prompt_id, run.item.client_id
        wants_metadata = sid is not None and bool(
            self._socket_flags.get(sid, {}).get("supports_preview_metadata")
        )
        for index in range(images.batch):
            png = self._png(images, index, None)
            self._progress_state(run, node_id, index, images.batch, "running")
            if wants_metadata:
                meta = json.dumps(
                    {
                        "node_id": node_id,
                        "prompt_id": prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": "image/png",
                    }
                ).encode()
                self._send(4, struct.pack(">I", len(meta)) + meta + png, sid)
            self._send(
                "progress",
                {"value": index, "max": images.batch, "prompt_id": prompt_id, "node": node_id},
                sid,
            )
            if not wants_metadata:
                self._send(1, struct.pack(">I", 2) + png, sid)

    # ------------------------------------------------------------------ images and files

    def _find_input_file(self, value: object) -> tuple[str, str, str] | None:
        if not isinstance(value, str) or not value:
            return None
        name, annotated = _split_annotation(value)
        subfolder, _, filename = name.rpartition("/")
        key = (annotated or "input", subfolder, filename)
        return key if key in self._files else None

    def _load_image(self, value: object) -> list[Any]:
        key = self._find_input_file(value)
        if key is None:
            raise _NodeFailure("FileNotFoundError", f"Invalid image file: {value}")
        with Image.open(io.BytesIO(self._files[key])) as image:
            width, height = image.size
        return [_Pic("IMAGE", width, height, source=key), _Pic("MASK", width, height, channels=1)]

    def _upscale_factor(self, model: object) -> int:
        name = model.kind if isinstance(model, _Opaque) else ""
        match = re.search(r"(\d+)x|x(\d+)", name)
        return int(match.group(1) or match.group(2)) if match else 4

    def _render(self, pic: _Pic, index: int) -> Image.Image:
        shown = pic.shown()
        if shown is not None and all(key in self._files for key, _ in shown):
            image = self._file_image(shown[0][0], pic)
            total = shown[0][1]
            for key, weight in shown[1:]:
                # Blending in each file by its share of the total so far weighs every file as `mix` says.
                total += weight
                image = Image.blend(image, self._file_image(key, pic), weight / total)
        else:
            if pic.color is not None:
                rgb = ((pic.color >> 16) & 255, (pic.color >> 8) & 255, pic.color & 255)
            else:
                rng = random.Random(f"{pic.seed}:{index}")
                rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            image = Image.new("RGB", (max(1, pic.width), max(1, pic.height)), rgb)
        return image.convert("RGBA") if pic.channels == 4 else image

    def _file_image(self, key: _FileKey, pic: _Pic) -> Image.Image:
        with Image.open(io.BytesIO(self._files[key])) as source:
            image = source.convert("RGB")
        return image if image.size == (pic.width, pic.height) else image.resize((pic.width, pic.height))

    def _png(self, pic: _Pic, index: int, graph: dict[str, Any] | None) -> bytes:
        info = PngInfo()
        if graph is not None:
            info.add_text("prompt", json.dumps(graph))
        buffer = io.BytesIO()
        self._render(pic, index).save(buffer, format="PNG", pnginfo=info, compress_level=1)
        return buffer.getvalue()

    def _save(self, images: Any, prefix: str, kind: str, graph: dict[str, Any]) -> list[dict[str, str]]:
        if not isinstance(images, _Pic):
            raise _NodeFailure("AttributeError", f"the fake cannot make images from {images!r}")
        subfolder, _, base = prefix.rpartition("/")
        key = (kind, subfolder, base)
        counter = self._counters.get(key, 0) + 1
        saved = []
        for index in range(images.batch):
            filename = f"{base}_{counter:05}_.png"
            self._files[(kind, subfolder, filename)] = self._png(images, index, graph)
            saved.append({"filename": filename, "subfolder": subfolder, "type": kind})
            self._counters[key] = counter
            counter += 1
        return saved

    def _preview_jpeg(self, latent: _Pic, step: int, steps: int) -> bytes:
        shade = int(255 * step / max(1, steps))
        image = Image.new(
            "RGB", (max(1, latent.width // 8), max(1, latent.height // 8)), (shade, 64, 255 - shade)
        )
        image = ImageOps.contain(image, (self.preview_size, self.preview_size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()


# ---------------------------------------------------------------------- helpers


def _error(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _clean_subfolder(subfolder: str) -> str:
    cleaned = os.path.normpath(subfolder).replace("\\", "/") if subfolder else ""
    return "" if cleaned == "." else cleaned


def _split_annotation(name: str) -> tuple[str, str | None]:
    for kind in ("input", "output", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def _types_match(received: object, expected: object) -> bool:
    if isinstance(expected, list) or expected in ("*", "COMBO") or received == "*":
        return True
    if received == expected:
        return True
    received_set = {part.strip() for part in str(received).split(",")}
    expected_set = {part.strip() for part in str(expected).split(",")}
    return received_set <= expected_set


def _check_literal(
    name: str, value: Any, input_type: Any, extra: dict[str, Any], info: Any
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    if isinstance(input_type, list) or input_type == "COMBO":
        options = input_type if isinstance(input_type, list) else extra.get("options", [])
        if value not in options:
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {options}",
                    input_name=name,
                    input_config=info,
                    received_value=value,
                )
            )
        return errors
    converters: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
    convert = converters.get(str(input_type))
    if convert is None:
        return errors
    try:
        converted = convert(value)
    except (TypeError, ValueError) as exc:
        errors.append(
            _error(
                "invalid_input_type",
                f"Failed to convert an input value to a {input_type} value",
                f"{name}, {value}, {exc}",
                input_name=name,
                input_config=info,
                received_value=value,
                exception_message=str(exc),
            )
        )
        return errors
    if input_type in ("INT", "FLOAT"):
        if "min" in extra and converted < extra["min"]:
            errors.append(
                _error(
                    "value_smaller_than_min",
                    f"Value {converted} smaller than min of {extra['min']}",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=converted,
                )
            )
        if "max" in extra and converted > extra["max"]:
            errors.append(
                _error(
                    "value_bigger_than_max",
                    f"Value {converted} bigger than max of {extra['max']}",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=converted,
                )
            )
    return errors


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _scaled(pic: _Pic, width: int, height: int) -> _Pic:
    """Resize like ComfyUI's ImageScale/LatentUpscale: a 0 side keeps the aspect ratio."""
    if width == 0 and height == 0:
        return pic
    if width == 0:
        width = max(1, round(pic.width * height / pic.height))
    if height == 0:
        height = max(1, round(pic.height * width / pic.width))
    return replace(pic, width=width, height=height)


def _blended(class_type: str, inputs: dict[str, Any]) -> list[Any] | None:
    """ImageBlend (normal mode): image1 x (1 - f) + image2 x f; LatentBlend: samples1 x f + samples2 x (1 - f).
    The result shows both inputs' files, weighted; None (pass image1 through) when an input shows no file."""
    image = class_type == "ImageBlend"
    first = inputs.get("image1" if image else "samples1")
    second = inputs.get("image2" if image else "samples2")
    factor = inputs.get("blend_factor")
    if image and inputs.get("blend_mode") != "normal":
        return None
    if not isinstance(first, _Pic) or not isinstance(second, _Pic) or not isinstance(factor, int | float):
        return None
    first_files, second_files = first.shown(), second.shown()
    if first_files is None or second_files is None:
        return None
    share = float(factor) if image else 1.0 - float(factor)  # the second input's weight
    weights: dict[_FileKey, float] = {}
    for files, scale in ((first_files, 1.0 - share), (second_files, share)):
        for key, weight in files:
            weights[key] = weights.get(key, 0.0) + weight * scale
    mix = tuple((key, weight) for key, weight in weights.items() if weight > 0)
    return [replace(first, source=None, mix=mix)]


def _transform(
    class_type: str, inputs: dict[str, Any], upscale_factor: Callable[[object], int]
) -> list[Any] | None:
    """Outputs of the nodes that change sizes or batches; None for the rest (generic pass-through)."""
    pic = next((value for value in inputs.values() if isinstance(value, _Pic)), None)
    width, height = _int(inputs.get("width")), _int(inputs.get("height"))
    if class_type in ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo"):
        return [_Pic("LATENT", width, height, _int(inputs.get("batch_size"), 1))]
    if class_type == "EmptyImage":
        return [
            _Pic("IMAGE", width, height, _int(inputs.get("batch_size"), 1), color=_int(inputs.get("color")))
        ]
    if class_type == "SolidMask":
        return [_Pic("MASK", width, height, channels=1)]
    if pic is None:
        return None
    if class_type in ("VAEDecode", "VAEDecodeTiled"):
        return [replace(pic, kind="IMAGE", channels=3)]
    if class_type in ("VAEEncode", "VAEEncodeTiled", "VAEEncodeForInpaint"):
        return [replace(pic, kind="LATENT", width=pic.width // 8 * 8, height=pic.height // 8 * 8)]
    if class_type in ("ImageScale", "LatentUpscale"):
        return [_scaled(pic, width, height)]
    if class_type in ("ImageScaleBy", "LatentUpscaleBy"):
        scale = float(inputs.get("scale_by") or 1.0)
        if class_type == "LatentUpscaleBy":
            return [
                replace(pic, width=round(pic.width / 8 * scale) * 8, height=round(pic.height / 8 * scale) * 8)
            ]
        return [replace(pic, width=round(pic.width * scale), height=round(pic.height * scale))]
    if class_type == "ImageUpscaleWithModel":
        factor = upscale_factor(inputs.get("upscale_model"))
        return [replace(pic, width=pic.width * factor, height=pic.height * factor)]
    if class_type == "JoinImageWithAlpha":
        return [replace(pic, channels=4)]
    if class_type == "ImageBatch":
        first, second = inputs.get("image1"), inputs.get("image2")
        if isinstance(first, _Pic) and isinstance(second, _Pic):
            if first.channels != second.channels:
                raise _NodeFailure(
                    "RuntimeError",
                    "Sizes of tensors must match except in dimension 0. Expected size "
                    f"{first.channels} but got size {second.channels} for tensor number 1 in the list.",
                )
            return [replace(first, batch=first.batch + second.batch)]
        return None
    if class_type in ("ImageBlend", "LatentBlend"):
        return _blended(class_type, inputs)
    if class_type == "RepeatLatentBatch":
        return [replace(pic, batch=pic.batch * max(1, _int(inputs.get("amount"), 1)))]
    if class_type in ("LatentFromBatch", "ImageFromBatch"):
        start = _int(inputs.get("batch_index"))
        return [replace(pic, batch=max(1, min(_int(inputs.get("length"), 1), pic.batch - start)))]
    if class_type == "ImagePadForOutpaint":
        grow_w = _int(inputs.get("left")) + _int(inputs.get("right"))
        grow_h = _int(inputs.get("top")) + _int(inputs.get("bottom"))
        padded = replace(pic, width=pic.width + grow_w, height=pic.height + grow_h)
        return [padded, _Pic("MASK", padded.width, padded.height, channels=1)]
    if class_type == "ImageCrop":
        return [replace(pic, width=min(width, pic.width), height=min(height, pic.height))]
    return None
