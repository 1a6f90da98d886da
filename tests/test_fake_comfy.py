"""The fake ComfyUI speaks the protocol recorded from a real ComfyUI 0.3.64 (tests/data/protocol)."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfy.blend import blend_values
from comfy.workflow import load_builtin_templates
from tests.fakes.comfy_server import FakeComfyUI

PROTOCOL = Path(__file__).parent / "data" / "protocol"


def recorded_types(capture: str) -> list[str]:
    lines = (PROTOCOL / capture / "ws.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["msg"]["type"] for line in lines]


def recorded_frames(capture: str) -> list[dict[str, Any]]:
    lines = (PROTOCOL / capture / "ws.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["msg"] for line in lines]


def workflow(name: str) -> dict[str, Any]:
    return json.loads((PROTOCOL / "workflows" / f"{name}.json").read_text(encoding="utf-8"))


def recorded_rejection(name: str) -> dict[str, Any]:
    text = (PROTOCOL / name).read_text(encoding="utf-8")
    return json.loads(text.rsplit("HTTP", 1)[0])


def txt2img(
    seed: int = 42, steps: int = 4, width: int = 64, height: int = 64, batch: int = 1
) -> dict[str, Any]:
    graph = workflow("10_txt2img_tiny_64px_4steps")
    graph["3"]["inputs"].update(seed=seed, steps=steps)
    graph["5"]["inputs"].update(width=width, height=height, batch_size=batch)
    return graph


class RawSocket:
    """A bare WebSocket client that records every frame, for comparing with the recordings."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.client_id = ""
        self.frames: list[dict[str, Any] | bytes] = []
        self._tick = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))
            elif message.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(message.data)
            self._tick.set()
            self._tick = asyncio.Event()
        self._tick.set()

    def types(self, *, skip: tuple[str, ...] = ()) -> list[str]:
        names = []
        for frame in self.frames:
            name = (
                f"BINARY({struct.unpack('>I', frame[:4])[0]})" if isinstance(frame, bytes) else frame["type"]
            )
            if name not in skip:
                names.append(name)
        return names

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame["data"] for frame in self.frames if isinstance(frame, dict) and frame["type"] == kind]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate():
                await self._tick.wait()

    async def wait_run_end(self, prompt_id: str) -> None:
        await self.wait_for(
            lambda: any(data == {"node": None, "prompt_id": prompt_id} for data in self.of_type("executing"))
        )

    async def close(self) -> None:
        await self.ws.close()
        await self._task


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sockets(fake: FakeComfyUI, http: aiohttp.ClientSession) -> Callable[..., Any]:
    async def open_socket(client_id: str = "", *, feature_flags: bool = False) -> RawSocket:
        url = f"{fake.url}/ws" + (f"?clientId={client_id}" if client_id else "")
        raw = RawSocket(await http.ws_connect(url))
        await raw.wait_for(lambda: bool(raw.frames))  # the status frame: registered
        raw.client_id = raw.of_type("status")[0]["sid"]
        if feature_flags:
            await raw.ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            await raw.wait_for(lambda: bool(raw.of_type("feature_flags")))
        return raw

    return open_socket


async def post(http: aiohttp.ClientSession, fake: FakeComfyUI, body: Any) -> tuple[int, Any]:
    async with http.post(f"{fake.url}/prompt", json=body) as response:
        return response.status, await response.json()


async def run(http: aiohttp.ClientSession, fake: FakeComfyUI, raw: RawSocket, graph: dict[str, Any]) -> str:
    status, body = await post(http, fake, {"prompt": graph, "client_id": raw.client_id})
    assert status == 200, body
    await raw.wait_run_end(body["prompt_id"])
    return body["prompt_id"]


# ---------------------------------------------------------------------------- run sequences


async def test_txt2img_run_sends_the_recorded_frame_sequence(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    prompt_id = await run(http, fake, raw, workflow("10_txt2img_tiny_64px_4steps"))

    assert raw.types() == recorded_types("10_txt2img_tiny_4steps_nopreview")
    recorded = recorded_frames("10_txt2img_tiny_4steps_nopreview")
    recorded_nodes = [m["data"]["node"] for m in recorded if m["type"] == "executing"]
    assert [data["node"] for data in raw.of_type("executing")] == recorded_nodes
    assert raw.of_type("executing")[-1] == {"node": None, "prompt_id": prompt_id}
    assert [(p["value"], p["max"], p["node"]) for p in raw.of_type("progress")] == [
        (step, 4, "3") for step in (1, 2, 3, 4)
    ]
    recorded_executed = next(m["data"] for m in recorded if m["type"] == "executed")
    executed = raw.of_type("executed")[0]
    assert executed == {**recorded_executed, "prompt_id": prompt_id}
    assert raw.of_type("progress_state")[-1]["nodes"]["3"]["state"] == "finished"


async def test_history_entry_has_the_recorded_shape(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    prompt_id = await run(http, fake, raw, workflow("10_txt2img_tiny_64px_4steps"))
    async with http.get(f"{fake.url}/history/{prompt_id}") as response:
        entry = (await response.json())[prompt_id]
    recorded = next(
        iter(json.loads((PROTOCOL / "10_txt2img_tiny_4steps_nopreview/history.json").read_text()).values())
    )

    assert entry.keys() == recorded.keys()
    assert entry["prompt"][1:] == [
        prompt_id,
        workflow("10_txt2img_tiny_64px_4steps"),
        {"client_id": "bot-1"},
        ["9"],
    ]
    assert entry["outputs"] == recorded["outputs"]
    assert entry["meta"] == recorded["meta"]
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in recorded["status"]["messages"]]
    assert {k: v for k, v in entry["status"].items() if k != "messages"} == {
        "status_str": "success",
        "completed": True,
    }
    async with http.get(f"{fake.url}/history/not-a-prompt") as response:
        assert await response.json() == {}


async def test_same_graph_twice_is_cached_like_the_recording(fake, http, sockets) -> None:
    first = await sockets("bot-1")
    await run(http, fake, first, workflow("01_empty_image_save"))
    await first.close()
    raw = await sockets("bot-1")
    await run(http, fake, raw, workflow("01_empty_image_save"))

    assert raw.types() == recorded_types("02_cached_run")
    assert raw.of_type("execution_cached")[0]["nodes"] == ["1", "2", "3"]
    assert raw.of_type("executed")[0]["output"]["images"][0]["filename"] == "discordbot_test_00001_.png"
    assert raw.of_type("progress") == []


async def test_new_seed_reruns_only_the_sampler_and_what_follows(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    await run(http, fake, raw, txt2img(seed=1))
    raw.frames.clear()
    await run(http, fake, raw, txt2img(seed=2))

    assert raw.of_type("execution_cached")[0]["nodes"] == ["4", "5", "6", "7"]
    assert [data["node"] for data in raw.of_type("executing")] == ["3", "8", "9", None]
    assert raw.of_type("executed")[0]["output"]["images"][0]["filename"] == "discordbot_txt2img_00002_.png"


async def test_runtime_error_matches_the_recording(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    prompt_id = await run(http, fake, raw, workflow("02_runtime_error"))

    assert raw.types() == recorded_types("03_runtime_error")
    recorded = next(m["data"] for m in recorded_frames("03_runtime_error") if m["type"] == "execution_error")
    error = raw.of_type("execution_error")[0]
    assert error.keys() == recorded.keys()
    assert (error["node_id"], error["node_type"], error["exception_type"]) == (
        "4",
        "ImageBatch",
        "RuntimeError",
    )
    assert error["exception_message"] == recorded["exception_message"]
    async with http.get(f"{fake.url}/history/{prompt_id}") as response:
        entry = (await response.json())[prompt_id]
    assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"]) == (
        "error",
        False,
        {},
    )


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "recording"),
    [
        ({"prompt": workflow("03_invalid_unknown_node")}, "post_03_invalid_unknown_node.txt"),
        ({"prompt": workflow("04_invalid_values")}, "post_04_invalid_values.txt"),
        ({"prompt": workflow("05_invalid_no_output")}, "post_05_invalid_no_output.txt"),
        ({"client_id": "x"}, "post_no_prompt.txt"),
    ],
    ids=["unknown-node", "invalid-values", "no-output", "no-prompt"],
)
async def test_rejections_equal_the_recorded_400_bodies(fake, http, body, recording) -> None:
    fake.checkpoints = []  # the recording was made with no checkpoint in the list

    status, answer = await post(http, fake, body)

    assert (status, answer) == (400, recorded_rejection(recording))


async def test_body_that_is_not_json_is_a_500(fake, http) -> None:
    async with http.post(f"{fake.url}/prompt", data=b"{nope") as response:
        assert response.status == 500
        assert await response.text() == "500 Internal Server Error\n\nServer got itself in trouble"


async def test_prompt_id_chosen_by_the_client_is_kept_and_must_be_a_uuid(fake, http) -> None:
    chosen = "5e119ec8-8c21-4465-b0be-e866f1c2cc37"
    status, body = await post(http, fake, {"prompt": txt2img(), "prompt_id": chosen})
    assert (status, body["prompt_id"]) == (200, chosen)

    status, body = await post(http, fake, {"prompt": txt2img(), "prompt_id": "job-17"})
    assert (status, body["error"]["type"]) == (400, "invalid_prompt_id")


# ---------------------------------------------------------------------------- routing


async def test_prompt_with_client_id_reaches_only_its_socket(fake, http, sockets) -> None:
    x = await sockets("client-x")
    y = await sockets("client-y")
    await run(http, fake, x, txt2img(steps=5))
    await y.wait_for(lambda: len(y.of_type("status")) == 4)

    recorded = json.loads((PROTOCOL / "50_multiclient/multiclient.json").read_text())["with_client_id_X"]
    assert x.types() == recorded["X_types"]
    assert y.types() == recorded["Y_types"]


async def test_prompt_without_client_id_broadcasts_progress_only(fake, http, sockets) -> None:
    x = await sockets("client-x")
    y = await sockets("client-y")
    await run(http, fake, x, txt2img(seed=1, steps=5))  # as recorded: the loaders are cached
    await y.wait_for(lambda: len(y.of_type("status")) == 4)
    x.frames.clear()
    y.frames.clear()
    status, body = await post(http, fake, {"prompt": txt2img(seed=2, steps=5)})
    assert status == 200
    await fake.wait_finished(body["prompt_id"])
    for raw in (x, y):
        await raw.wait_for(
            lambda raw=raw: raw.types()[-1:] == ["status"] and len(raw.of_type("progress")) == 5
        )

    recorded = json.loads((PROTOCOL / "50_multiclient/multiclient.json").read_text())["without_client_id"]
    assert x.types() == recorded["X_types"]
    assert y.types() == recorded["Y_types"]


async def test_reconnect_mid_run_gets_the_node_without_prompt_id(fake, http, sockets) -> None:
    old = await sockets("client-x")
    fake.pause()
    _, body = await post(http, fake, {"prompt": txt2img(steps=3), "client_id": "client-x"})
    await fake.wait_paused()

    new = await sockets("client-x")
    await new.wait_for(lambda: len(new.frames) >= 2)
    old_count = len(old.frames)
    fake.resume()
    await new.wait_run_end(body["prompt_id"])

    recorded = json.loads((PROTOCOL / "50_multiclient/multiclient.json").read_text())["reconnect_first_msgs"]
    assert new.frames[0] == {**recorded[0], "data": {**recorded[0]["data"], "sid": "client-x"}}
    assert new.frames[1] == recorded[1] == {"type": "executing", "data": {"node": "3"}}
    assert [p["value"] for p in new.of_type("progress")] == [1, 2, 3]
    assert len(old.frames) == old_count  # the replaced socket hears nothing more


async def test_old_socket_closing_late_unregisters_the_newer_one(fake, sockets) -> None:
    """ComfyUI pops the client id when any socket of that id closes, even a replaced one."""
    old = await sockets("client-x")
    new = await sockets("client-x")
    assert fake.connected_clients == ["client-x"]

    await old.close()
    await fake.wait_until(lambda: fake.connected_clients == [])
    assert not new.ws.closed


# ---------------------------------------------------------------------------- queue and interrupt


async def test_queue_lists_five_element_items_and_delete_removes_only_pending(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    fake.pause()
    ids = []
    for seed in (1, 2, 3):
        _, body = await post(http, fake, {"prompt": txt2img(seed=seed), "client_id": "bot-1"})
        ids.append(body["prompt_id"])
    await fake.wait_paused()
    a, b, c = ids

    async with http.get(f"{fake.url}/queue") as response:
        queue = await response.json()
    assert [item[1] for item in queue["queue_running"]] == [a]
    assert [item[1] for item in queue["queue_pending"]] == [b, c]
    assert all(len(item) == 5 for item in queue["queue_running"] + queue["queue_pending"])
    assert queue["queue_pending"][0][3] == {"client_id": "bot-1"} and queue["queue_pending"][0][4] == ["9"]

    async with http.post(f"{fake.url}/queue", json={"delete": [c, a]}) as response:
        assert (response.status, await response.read()) == (200, b"")
    assert (fake.running_id, fake.pending_ids) == (a, [b])

    fake.resume()
    await raw.wait_run_end(b)
    async with http.get(f"{fake.url}/history/{c}") as response:
        assert await response.json() == {}
    assert fake.executed_prompt_ids == [a, b]


async def test_interrupt_with_prompt_id_only_stops_that_prompt_when_running(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    fake.pause()
    ids = []
    for seed in (1, 2):
        _, body = await post(http, fake, {"prompt": txt2img(seed=seed, steps=20), "client_id": "bot-1"})
        ids.append(body["prompt_id"])
    a, b = ids
    await fake.wait_paused()

    async with http.post(f"{fake.url}/interrupt", json={"prompt_id": b}) as response:  # pending: no effect
        assert (response.status, await response.read()) == (200, b"")
    async with http.post(f"{fake.url}/interrupt", json={"prompt_id": a}) as response:
        assert response.status == 200
    fake.resume()
    await raw.wait_run_end(a)

    interrupted = raw.of_type("execution_interrupted")
    log = [json.loads(line) for line in (PROTOCOL / "20_queue_interrupt/log.jsonl").read_text().splitlines()]
    recorded = next(e["msg"]["data"] for e in log if e.get("msg", {}).get("type") == "execution_interrupted")
    assert interrupted[0].keys() == recorded.keys()
    assert (interrupted[0]["prompt_id"], interrupted[0]["node_id"], interrupted[0]["node_type"]) == (
        a,
        "3",
        "KSampler",
    )
    types = raw.types(skip=("progress_state", "progress"))
    end = types.index("execution_interrupted")
    assert types[end : end + 3] == ["execution_interrupted", "status", "executing"]

    await fake.wait_started(b)
    async with http.post(f"{fake.url}/interrupt") as response:  # no body: global
        assert response.status == 200
    await raw.wait_run_end(b)
    assert [data["prompt_id"] for data in raw.of_type("execution_interrupted")] == [a, b]
    assert fake.interrupt_requests == [b, a, None]
    async with http.get(f"{fake.url}/history/{a}") as response:
        status = (await response.json())[a]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)


# ---------------------------------------------------------------------------- files


async def test_view_serves_pngs_of_the_requested_size_with_the_prompt_chunk(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    graph = txt2img(width=96, height=64, batch=4)
    await run(http, fake, raw, graph)

    images = raw.of_type("executed")[0]["output"]["images"]
    assert [image["filename"] for image in images] == [
        f"discordbot_txt2img_0000{n}_.png" for n in (1, 2, 3, 4)
    ]
    colours = set()
    for image in images:
        async with http.get(f"{fake.url}/api/view", params=image) as response:
            assert response.status == 200 and response.content_type == "image/png"
            png = Image.open(io.BytesIO(await response.read()))
        assert png.size == (96, 64)
        assert json.loads(png.info["prompt"]) == graph
        colours.add(png.getpixel((0, 0)))
    assert len(colours) == 4
    async with http.get(f"{fake.url}/view", params={"filename": "nope.png", "type": "output"}) as response:
        assert response.status == 404
    async with http.get(f"{fake.url}/view", params={"filename": "../secret", "type": "output"}) as response:
        assert response.status == 400


async def test_uploaded_image_flows_through_load_image_and_scaling(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="PNG")
    form = aiohttp.FormData()
    form.add_field("image", buffer.getvalue(), filename="parent.png", content_type="image/png")
    form.add_field("subfolder", "bot")
    async with http.post(f"{fake.url}/upload/image", data=form) as response:
        uploaded = await response.json()
    assert uploaded == {"name": "parent.png", "subfolder": "bot", "type": "input"}

    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "bot/parent.png"}},
        "2": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "scale_by": 2.0},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "up/scaled"}},
    }
    await run(http, fake, raw, graph)
    image = raw.of_type("executed")[0]["output"]["images"][0]
    assert image == {"filename": "scaled_00001_.png", "subfolder": "up", "type": "output"}
    png = Image.open(io.BytesIO(fake.file("scaled_00001_.png", "up") or b""))
    assert (png.size, png.getpixel((5, 5))) == ((80, 60), (200, 10, 10))

    missing = copy.deepcopy(graph)
    missing["1"]["inputs"]["image"] = "nothing.png"
    status, body = await post(http, fake, {"prompt": missing})
    assert status == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "custom_validation_failed"


BLEND_COLOURS = [(200, 0, 0), (0, 0, 200), (0, 200, 0), (250, 250, 250), (0, 0, 0)]


async def upload_png(
    http: aiohttp.ClientSession,
    fake: FakeComfyUI,
    name: str,
    size: tuple[int, int],
    colour: tuple[int, int, int],
) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    form = aiohttp.FormData()
    form.add_field("image", buffer.getvalue(), filename=name, content_type="image/png")
    async with http.post(f"{fake.url}/upload/image", data=form) as response:
        return str((await response.json())["name"])


@pytest.mark.parametrize("count", [2, 5])
async def test_builtin_blend_runs_and_yields_four_images_mixing_every_input(
    fake, http, sockets, count
) -> None:
    raw = await sockets("bot-1")
    colours = BLEND_COLOURS[:count]
    names = [await upload_png(http, fake, f"in_{i}.png", (40 + 8 * i, 30), c) for i, c in enumerate(colours)]
    values = {
        "positive": "",
        "seed": 3,
        "steps": 2,
        "checkpoint": "random_sd15_tiny.safetensors",
        "filename_prefix": "blend/job_1",
    }
    graph = load_builtin_templates()["blend"].render(values | blend_values(names, width=64, height=96))

    await run(http, fake, raw, graph)

    images = raw.of_type("executed")[0]["output"]["images"]
    assert [i["filename"] for i in images] == [f"job_1_0000{n}_.png" for n in (1, 2, 3, 4)]
    expected = tuple(round(sum(c[channel] for c in colours) / count) for channel in range(3))
    for image in images:
        png = Image.open(io.BytesIO(fake.file(image["filename"], "blend") or b""))
        assert png.size == (64, 96)
        assert all(abs(got - want) <= 2 for got, want in zip(png.getpixel((5, 5)), expected, strict=True))


async def test_latent_blend_weighs_samples1_by_the_factor_like_comfyui(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    red = await upload_png(http, fake, "red.png", (32, 32), (200, 0, 0))
    blue = await upload_png(http, fake, "blue.png", (32, 32), (0, 0, 200))

    def encoded(image_node: str) -> dict[str, Any]:
        return {"class_type": "VAEEncode", "inputs": {"pixels": [image_node, 0], "vae": ["1", 2]}}

    graph = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "random_sd15_tiny.safetensors"},
        },
        "2": {"class_type": "LoadImage", "inputs": {"image": red}},
        "3": {"class_type": "LoadImage", "inputs": {"image": blue}},
        "4": encoded("2"),
        "5": encoded("3"),
        "6": {
            "class_type": "LatentBlend",
            "inputs": {"samples1": ["4", 0], "samples2": ["5", 0], "blend_factor": 0.75},
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "latent_mix"}},
    }
    await run(http, fake, raw, graph)

    png = Image.open(io.BytesIO(fake.file("latent_mix_00001_.png") or b""))
    assert png.getpixel((1, 1)) == (150, 0, 50)  # samples1 x 0.75 + samples2 x 0.25


async def test_upload_without_overwrite_renames_a_different_file(fake, http) -> None:
    names = []
    for content in (b"first", b"second", b"second"):
        form = aiohttp.FormData()
        form.add_field("image", content, filename="x.png", content_type="image/png")
        form.add_field("overwrite", "false")
        async with http.post(f"{fake.url}/upload/image", data=form) as response:
            names.append((await response.json())["name"])
    assert names == ["x.png", "x (1).png", "x (1).png"]


# ---------------------------------------------------------------------------- previews


async def test_legacy_preview_frames_follow_their_progress(fake, http, sockets) -> None:
    fake.preview = True
    raw = await sockets("bot-1")
    await run(http, fake, raw, txt2img(steps=6))

    summary = json.loads((PROTOCOL / "30_latent2rgb_legacy_frames/summary.json").read_text())
    assert raw.types() == summary["type_sequence"]
    frame = next(frame for frame in raw.frames if isinstance(frame, bytes))
    assert frame[:8] == struct.pack(">II", 1, 1) and frame[8:10] == b"\xff\xd8"


async def test_metadata_preview_frames_come_before_their_progress(fake, http, sockets) -> None:
    warmup = await sockets("warmup")
    await run(http, fake, warmup, txt2img(width=128))  # so loaders and prompts are cached, as recorded
    await warmup.close()
    fake.preview = True
    raw = await sockets("bot-1", feature_flags=True)
    prompt_id = await run(http, fake, raw, txt2img(steps=4))

    summary = json.loads((PROTOCOL / "31_latent2rgb_metadata_frames/summary.json").read_text())
    assert raw.types() == summary["type_sequence"]
    assert raw.of_type("feature_flags")[0] == {
        "supports_preview_metadata": True,
        "max_upload_size": 104857600,
    }
    frame = next(frame for frame in raw.frames if isinstance(frame, bytes))
    (kind, meta_len) = struct.unpack(">II", frame[:8])
    meta = json.loads(frame[8 : 8 + meta_len])
    assert kind == 4 and meta["prompt_id"] == prompt_id and meta["node_id"] == "3"
    assert meta["image_type"] == "image/jpeg" and frame[8 + meta_len : 10 + meta_len] == b"\xff\xd8"


# ---------------------------------------------------------------------------- server info and faults


async def test_every_route_is_also_served_under_api(fake, http) -> None:
    for path in ("/queue", "/history", "/system_stats", "/features", "/object_info/KSampler", "/prompt"):
        for prefix in ("", "/api"):
            async with http.get(f"{fake.url}{prefix}{path}") as response:
                assert response.status == 200, f"{prefix}{path}"
    async with http.get(f"{fake.url}/api/system_stats") as response:
        stats = await response.json()
    assert stats == json.loads((PROTOCOL / "system_stats.json").read_text())
    async with http.get(f"{fake.url}/queue") as response:
        assert await response.json() == json.loads((PROTOCOL / "queue_empty.json").read_text())


async def test_object_info_lists_the_fakes_checkpoints(fake, http) -> None:
    fake.checkpoints = ["mine.safetensors"]
    async with http.get(f"{fake.url}/object_info/CheckpointLoaderSimple") as response:
        info = await response.json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["mine.safetensors"]


async def test_http_error_knob_fails_every_request_and_the_socket(fake, http) -> None:
    fake.http_error = 503
    async with http.get(f"{fake.url}/queue") as response:
        assert response.status == 503
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(f"{fake.url}/ws?clientId=x")


async def test_stop_refuses_connections_and_start_listens_on_the_same_port(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    url = fake.url
    await fake.stop()
    await raw.wait_for(lambda: raw.ws.closed)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"{url}/queue"):
            pass

    await fake.start()
    assert fake.url == url
    async with http.get(f"{url}/queue") as response:
        assert response.status == 200


async def test_drop_sockets_cuts_connections_but_the_prompt_finishes(fake, http, sockets) -> None:
    raw = await sockets("bot-1")
    fake.pause()
    _, body = await post(http, fake, {"prompt": txt2img(), "client_id": "bot-1"})
    await fake.wait_paused()

    await fake.drop_sockets()
    await raw.wait_for(lambda: raw.ws.closed)
    fake.resume()
    await fake.wait_finished(body["prompt_id"])
    assert fake.history_count() == 1
