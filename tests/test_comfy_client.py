"""ComfyClient against the fake ComfyUI on loopback (and aioresponses for HTTP error paths)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from PIL import Image

from comfy.client import ComfyClient, PromptWatch, exponential_backoff
from comfy.events import (
    Cached,
    Executed,
    Executing,
    Failed,
    Preview,
    Progress,
    Started,
    StatusUpdate,
    Succeeded,
    parse_binary_frame,
    parse_text_frame,
)
from comfy.models import (
    BackendUnavailable,
    BadResponse,
    ExecutionFailed,
    PromptInterrupted,
    PromptLost,
    PromptRejected,
    WatchClosed,
    new_prompt_id,
)
from comfy.outcome import OutcomeStatus
from comfy.profiles import BackendConfig
from comfy.progress import ProgressTracker, sampler_steps
from tests.fakes.comfy_server import FakeComfyUI

PROTOCOL = Path(__file__).parent / "data" / "protocol"


def workflow(name: str) -> dict[str, Any]:
    return json.loads((PROTOCOL / "workflows" / f"{name}.json").read_text(encoding="utf-8"))


def txt2img(
    seed: int = 42, steps: int = 4, width: int = 64, height: int = 64, batch: int = 1
) -> dict[str, Any]:
    graph = workflow("10_txt2img_tiny_64px_4steps")
    graph["3"]["inputs"].update(seed=seed, steps=steps)
    graph["5"]["inputs"].update(width=width, height=height, batch_size=batch)
    return graph


def hires(seed: int = 5, steps: int = 4, hires_steps: int = 2) -> dict[str, Any]:
    """txt2img, then a latent upscale and a second KSampler: two samplers in one prompt."""
    graph = txt2img(seed=seed, steps=steps)
    graph["10"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 2.0},
    }
    graph["11"] = {
        "class_type": "KSampler",
        "inputs": {**graph["3"]["inputs"], "steps": hires_steps, "denoise": 0.5, "latent_image": ["10", 0]},
    }
    graph["8"]["inputs"]["samples"] = ["11", 0]
    return graph


def backend(url: str, timeout_s: float = 2.0) -> BackendConfig:
    return BackendConfig(name="gpu0", url=url, timeout_s=timeout_s)


async def within(awaitable: Any, seconds: float = 5.0) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


async def collect(watch: PromptWatch) -> list[Any]:
    async with asyncio.timeout(5):
        return [event async for event in watch]


@pytest.fixture
async def make_client(fake: FakeComfyUI) -> AsyncIterator[Callable[..., ComfyClient]]:
    clients: list[ComfyClient] = []

    def make(**options: Any) -> ComfyClient:
        options.setdefault("backoff", lambda attempt: 0.01)
        options.setdefault("idle_reconcile_s", None)
        config = backend(options.pop("url", fake.url), options.pop("timeout_s", 2.0))
        client = ComfyClient(config, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: Callable[..., ComfyClient]) -> ComfyClient:
    return make_client()


async def submit(client: ComfyClient, graph: dict[str, Any]) -> PromptWatch:
    prompt_id = new_prompt_id()
    watch = client.watch(prompt_id)  # before posting: no event can be missed
    await client.queue_prompt(graph, prompt_id)
    return watch


# ---------------------------------------------------------------------------- a normal run


async def test_full_run_streams_progress_previews_and_downloads_the_images(fake, client) -> None:
    fake.preview = True
    watch = await submit(client, txt2img(width=96, height=64, batch=4))

    events = await collect(watch)
    outcome = await within(watch.result())

    assert isinstance(events[0], Started) and isinstance(events[-1], Succeeded)
    assert [(e.node, e.value, e.max) for e in events if isinstance(e, Progress)] == [
        ("3", n, 4) for n in range(1, 5)
    ]
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 4 and {(p.node, p.mime) for p in previews} == {("3", "image/jpeg")}
    assert previews[0].image[:2] == b"\xff\xd8"
    assert [e.node for e in events if isinstance(e, Executing)] == ["4", "5", "7", "6", "3", "8", "9"]
    assert outcome.ok and not outcome.from_history
    assert [ref.filename for ref in outcome.images] == [
        f"discordbot_txt2img_0000{n}_.png" for n in range(1, 5)
    ]
    for ref in outcome.images:
        png = Image.open(io.BytesIO(await client.download_image(ref)))
        assert png.size == (96, 64)
    body = fake.received_bodies[-1]
    assert body["client_id"] == client.client_id and body["prompt_id"] == watch.prompt_id


async def test_legacy_preview_frames_are_attributed_to_the_running_node(fake, make_client) -> None:
    fake.preview = True
    client = make_client(preview_metadata=False)
    watch = await submit(client, txt2img(steps=3))

    previews = [e for e in await collect(watch) if isinstance(e, Preview)]

    assert [(p.prompt_id, p.node, p.mime) for p in previews] == [(watch.prompt_id, "3", "image/jpeg")] * 3


async def test_cached_rerun_succeeds_with_the_same_file(client) -> None:
    first = await within((await submit(client, workflow("01_empty_image_save"))).result())
    watch = await submit(client, workflow("01_empty_image_save"))
    events = await collect(watch)

    assert [e.nodes for e in events if isinstance(e, Cached)] == [("1", "2", "3")]
    assert not any(isinstance(e, Executing | Progress) for e in events)
    assert (await watch.result()).images == first.images


async def test_slow_consumer_never_blocks_the_socket_and_keeps_the_ending(fake, make_client) -> None:
    fake.preview = True
    client = make_client(watch_queue_size=8)
    watch = await submit(client, txt2img(steps=40))

    outcome = await within(watch.result())  # nobody iterated meanwhile
    events = await collect(watch)

    assert outcome.ok and watch.dropped_events > 0
    assert isinstance(events[0], Started) and isinstance(events[-1], Succeeded)
    assert [e.node for e in events if isinstance(e, Executing)] == ["4", "5", "7", "6", "3", "8", "9"]
    assert any(isinstance(e, Executed) for e in events)


async def test_watch_created_after_posting_still_sees_buffered_events(fake, client) -> None:
    queued = await client.queue_prompt(workflow("01_empty_image_save"))
    later = await submit(client, txt2img())
    await within(later.result())  # the socket is in order: the first prompt's frames were read

    watch = client.watch(queued.prompt_id)

    assert (await within(watch.result())).ok
    assert isinstance((await collect(watch))[0], Started)


async def test_two_clients_only_get_their_own_prompts(make_client) -> None:
    first, second = make_client(), make_client()
    watches = [await submit(first, txt2img(seed=1)), await submit(second, txt2img(seed=2))]

    for watch in watches:
        events = await collect(watch)
        assert {e.prompt_id for e in events} == {watch.prompt_id}
        assert (await watch.result()).ok
    assert first.client_id != second.client_id


# ---------------------------------------------------------------------------- cancelling


async def test_cancel_of_pending_prompt_deletes_it_from_queue(fake, client) -> None:
    fake.pause()
    running = await submit(client, txt2img(seed=1))
    pending = await submit(client, txt2img(seed=2))
    await fake.wait_paused()

    await client.cancel(pending.prompt_id)
    outcome = await within(pending.result())
    fake.resume()

    assert (outcome.status, outcome.reason) == (OutcomeStatus.INTERRUPTED, "cancelled before it started")
    assert fake.deleted_prompt_ids == [pending.prompt_id]
    assert (await within(running.result())).ok
    assert pending.prompt_id not in fake.executed_prompt_ids
    assert fake.global_interrupts == 0
    with pytest.raises(PromptInterrupted):
        outcome.raise_for_status()


async def test_cancel_of_running_prompt_interrupts_only_that_prompt(fake, client) -> None:
    fake.pause()
    running = await submit(client, txt2img(seed=1, steps=20))
    waiting = await submit(client, txt2img(seed=2))
    await fake.wait_paused()

    await client.cancel(running.prompt_id)
    fake.resume()
    outcome = await within(running.result())

    assert outcome.status is OutcomeStatus.INTERRUPTED
    assert (await within(waiting.result())).ok
    assert fake.interrupt_requests == [running.prompt_id]
    assert fake.global_interrupts == 0


async def test_interrupt_cannot_be_sent_without_a_prompt_id(fake, client) -> None:
    for bad in ("", "  "):
        with pytest.raises(ValueError, match="prompt id"):
            await client.interrupt(bad)
    assert fake.interrupt_requests == []


# ---------------------------------------------------------------------------- errors


async def test_rejected_prompt_has_one_readable_line_per_error(fake, client) -> None:
    fake.checkpoints = []
    with pytest.raises(PromptRejected) as caught:
        await client.queue_prompt(workflow("04_invalid_values"))

    assert caught.value.error_type == "prompt_outputs_failed_validation"
    assert caught.value.lines == (
        "node 1 (EmptyImage) color: Required input is missing",
        "node 1 (EmptyImage) width: Value 99999 bigger than max of 16384",
        "node 1 (EmptyImage) height: Failed to convert an input value to a INT value (got 'abc')",
        "node 2 (CheckpointLoaderSimple) ckpt_name: 'does_not_exist.safetensors' is not available; "
        "allowed: none are installed",
        "node 4 (VAEDecode) samples: Return type mismatch between linked nodes (got IMAGE, expected LATENT)",
    )


@pytest.mark.parametrize(
    ("graph", "line"),
    [
        (
            workflow("03_invalid_unknown_node"),
            "Cannot execute because node NoSuchNode does not exist. (Node ID '#1')",
        ),
        (workflow("05_invalid_no_output"), "Prompt has no outputs"),
    ],
)
async def test_rejected_prompt_without_node_errors_says_what_is_wrong(client, graph, line) -> None:
    with pytest.raises(PromptRejected) as caught:
        await client.queue_prompt(graph)
    assert str(caught.value) == line


async def test_rejection_also_ends_the_watch_registered_before_posting(fake, client) -> None:
    prompt_id = new_prompt_id()
    watch = client.watch(prompt_id)
    with pytest.raises(PromptRejected):
        await client.queue_prompt(workflow("05_invalid_no_output"), prompt_id)

    outcome = await within(watch.result())
    assert (outcome.status, outcome.reason) == (OutcomeStatus.FAILED, "Prompt has no outputs")


async def test_closing_a_watch_or_the_client_ends_waiting(fake, client) -> None:
    fake.pause()
    watch = await submit(client, txt2img(seed=12))
    other = await submit(client, txt2img(seed=13))
    await fake.wait_paused()
    events = asyncio.create_task(collect(watch))

    watch.close()
    assert isinstance((await within(events))[0], Started)
    with pytest.raises(WatchClosed):
        await watch.result()
    await client.close()
    with pytest.raises(WatchClosed):
        await within(other.result())
    fake.resume()


async def test_unknown_checkpoint_lists_the_installed_ones(fake, client) -> None:
    graph = txt2img()
    graph["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    with pytest.raises(
        PromptRejected, match=r"'nope.safetensors' is not available; allowed: random_sd15_tiny"
    ):
        await client.queue_prompt(graph)


async def test_execution_error_becomes_failed_without_tensor_dumps(client) -> None:
    watch = await submit(client, workflow("02_runtime_error"))
    outcome = await within(watch.result())

    assert outcome.status is OutcomeStatus.FAILED and outcome.error is not None
    error = outcome.error
    assert (error.node_id, error.node_type, error.exception_type) == ("4", "ImageBatch", "RuntimeError")
    assert error.exception_message.startswith("Sizes of tensors must match")
    assert "tensor(" not in repr(outcome) and len(error.exception_message) <= 300
    assert error.traceback_tail.startswith('File "/opt/ComfyUI/nodes.py"')
    with pytest.raises(
        ExecutionFailed, match=r"^ImageBatch \(node 4\) failed: RuntimeError: Sizes of tensors"
    ):
        await watch.wait()
    assert isinstance((await collect(watch))[-1], Failed)


async def test_failing_node_knob_fails_the_watch(fake, client) -> None:
    fake.fail_node = "KSampler"
    fake.fail_with = ("torch.OutOfMemoryError", "Allocation on device 0 would exceed allowed memory.")
    outcome = await within((await submit(client, txt2img(seed=9))).result())

    assert outcome.error is not None
    assert (outcome.error.node_id, outcome.error.exception_type) == ("3", "torch.OutOfMemoryError")


async def test_backend_down_raises_backend_unavailable_naming_the_url(fake, client) -> None:
    await fake.stop()

    with pytest.raises(BackendUnavailable) as caught:
        await client.queue_prompt(txt2img())
    assert fake.url in str(caught.value)
    with pytest.raises(BackendUnavailable, match=re.escape(fake.url)):
        await client.system_stats()


async def test_server_error_while_connected_is_backend_unavailable(fake, client) -> None:
    await client.connect()
    fake.http_error = 500
    with pytest.raises(BackendUnavailable, match="POST /prompt answered HTTP 500"):
        await client.queue_prompt(txt2img())


async def test_hanging_server_times_out_as_backend_unavailable(fake, make_client) -> None:
    client = make_client(timeout_s=0.2)
    fake.hang_http = True
    with pytest.raises(BackendUnavailable, match=r"timed out after 0\.2s"):
        await client.queue()
    fake.release_http()


# ---------------------------------------------------------------------------- reconnecting


async def test_socket_dropped_mid_run_completes_from_history(fake, client) -> None:
    fake.pause()
    watch = await submit(client, txt2img(seed=3, batch=2))
    await fake.wait_paused()
    fake.http_error = 503  # keep the client out until the prompt has finished
    await fake.drop_sockets()
    fake.resume()
    await fake.wait_finished(watch.prompt_id)
    fake.http_error = None

    outcome = await within(watch.result())

    assert outcome.ok and outcome.from_history
    assert [ref.filename for ref in outcome.images] == [
        "discordbot_txt2img_00001_.png",
        "discordbot_txt2img_00002_.png",
    ]
    assert client.reconnects >= 1


async def test_reconnect_while_running_keeps_the_prompt_going(fake, client) -> None:
    fake.pause()
    watch = await submit(client, txt2img(seed=4, steps=3))
    await fake.wait_paused()
    await fake.drop_sockets()
    await within(
        fake.wait_until(lambda: len(fake.connections) == 2 and fake.connected_clients == [client.client_id])
    )
    fake.resume()

    events = await collect(watch)
    outcome = await watch.result()

    assert outcome.ok and [ref.filename for ref in outcome.images] == ["discordbot_txt2img_00001_.png"]
    # The frame sent on reconnect names the node but no prompt: it is attributed to the running one.
    assert [e.node for e in events if isinstance(e, Executing)].count("3") == 2
    assert [e.value for e in events if isinstance(e, Progress)] == [1, 2, 3]


async def test_outputs_saved_while_disconnected_are_recovered_from_history(fake, client) -> None:
    graph = hires(seed=8)
    graph["20"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    graph["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "base"}}
    fake.pause(node="3")
    watch = await submit(client, graph)
    await fake.wait_paused()
    fake.http_error = 503
    await fake.drop_sockets()
    fake.pause(node="11")  # the first pass and its SaveImage run while the client is away
    await within(fake.wait_until(lambda: fake.paused_at is not None and fake.paused_at[1] == "11"))
    fake.http_error = None
    await within(fake.wait_until(lambda: fake.connected_clients == [client.client_id]))
    fake.resume()

    outcome = await within(watch.result())

    assert outcome.ok and outcome.from_history
    assert {node: [ref.filename for ref in refs] for node, refs in outcome.outputs.items()} == {
        "21": ["base_00001_.png"],
        "9": ["discordbot_txt2img_00001_.png"],
    }


async def test_prompt_that_vanished_while_disconnected_is_lost(fake, client) -> None:
    fake.pause()
    watch = await submit(client, txt2img(seed=5))
    await fake.wait_paused()
    fake.http_error = 503
    await fake.drop_sockets()
    fake.reset()  # the server restarted: queue and history are gone
    fake.http_error = None

    outcome = await within(watch.result())

    assert outcome.status is OutcomeStatus.LOST and fake.url in outcome.reason
    with pytest.raises(PromptLost):
        await watch.wait()


async def test_server_restart_on_the_same_port_is_survived(fake, client) -> None:
    await client.connect()
    await fake.stop()
    await fake.start()
    await within(fake.wait_until(lambda: len(fake.connections) == 2))

    assert (await within((await submit(client, txt2img())).result())).ok


async def test_reattach_after_a_restart_finishes_from_history(fake, client, make_client) -> None:
    done = await within((await submit(client, txt2img(seed=6))).result())

    restarted = make_client(client_id=client.client_id)
    watch = await restarted.reattach(done.prompt_id)

    outcome = await within(watch.result())
    assert outcome.ok and outcome.from_history and outcome.images == done.images


async def test_silent_socket_is_revived_by_the_idle_check(fake, make_client) -> None:
    """ComfyUI unregisters a client id when an older socket of that id closes late; the idle
    check notices the silence while the prompt still runs and reconnects."""
    client = make_client(idle_reconcile_s=0.2)
    fake.pause()
    watch = await submit(client, txt2img(seed=7))
    await fake.wait_paused()
    async with aiohttp.ClientSession() as http:
        stale = await http.ws_connect(f"{fake.url}/ws?clientId={client.client_id}")
        await stale.close()
    await within(fake.wait_until(lambda: fake.connected_clients == []))

    await within(fake.wait_until(lambda: fake.connected_clients == [client.client_id]))
    fake.resume()

    assert (await within(watch.result())).ok


# ---------------------------------------------------------------------------- files and info


async def test_upload_gives_the_name_for_load_image(fake, client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (1, 2, 3)).save(buffer, format="PNG")

    uploaded = await client.upload_image(buffer.getvalue(), "parent.png", subfolder="bot")
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded.load_image_name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "echo"}},
    }
    outcome = await within((await submit(client, graph)).result())

    assert uploaded.load_image_name == "bot/parent.png"
    assert Image.open(io.BytesIO(await client.download_image(outcome.images[0]))).size == (24, 16)
    with pytest.raises(ValueError):
        await client.upload_image(b"x", "../evil.png")


async def test_queue_history_and_server_info(fake, client) -> None:
    fake.pause()
    first = await submit(client, txt2img(seed=1))
    second = await submit(client, txt2img(seed=2))
    await fake.wait_paused()

    state = await client.queue()
    assert (state.running_ids, state.pending_ids) == ((first.prompt_id,), (second.prompt_id,))
    assert (state.position(first.prompt_id), state.position(second.prompt_id), state.position("x")) == (
        0,
        1,
        None,
    )
    assert await client.history(first.prompt_id) is None

    fake.resume()
    await within(second.result())
    assert list(await client.history_all(max_items=1)) == [second.prompt_id]
    entry = await client.history(first.prompt_id)
    assert entry is not None and entry.status is not None and entry.status.status_str == "success"
    assert (await client.system_stats()).system.comfyui_version == "0.3.64"
    assert (await client.features())["supports_preview_metadata"] is True
    assert "KSampler" in await client.object_info("KSampler")


async def test_server_that_ignores_our_prompt_id_is_followed(fake, client) -> None:
    fake.ignore_prompt_id = True
    chosen = new_prompt_id()
    watch = client.watch(chosen)

    queued = await client.queue_prompt(txt2img(seed=14), chosen)
    outcome = await within(watch.result())

    assert queued.prompt_id != chosen and watch.prompt_id == queued.prompt_id
    assert outcome.ok and outcome.prompt_id == queued.prompt_id


async def test_prompt_ids_must_be_uuids(client) -> None:
    with pytest.raises(ValueError, match="UUID"):
        await client.queue_prompt(txt2img(), "job-1")


# ---------------------------------------------------------------------------- HTTP error paths (aioresponses)


URL = "http://comfy.invalid:8188"


@pytest.mark.parametrize(
    ("mock", "message"),
    [
        ({"exception": TimeoutError()}, "timed out after 2s"),
        ({"status": 500, "body": "500 Internal Server Error"}, "answered HTTP 500"),
        ({"status": 503}, "answered HTTP 503"),
        ({"exception": aiohttp.ClientConnectionError("Connection refused")}, "Connection refused"),
    ],
    ids=["timeout", "500", "503", "refused"],
)
async def test_http_failures_become_backend_unavailable(mock, message) -> None:
    async with ComfyClient(backend(URL), idle_reconcile_s=None) as client:
        with aioresponses() as mocked:
            mocked.get(f"{URL}/queue", **mock)
            with pytest.raises(BackendUnavailable) as caught:
                await client.queue()
    assert message in str(caught.value) and URL in str(caught.value)


async def test_download_refuses_files_over_the_cap_and_missing_files() -> None:
    async with ComfyClient(backend(URL), idle_reconcile_s=None) as client:
        with aioresponses() as mocked:
            view = re.compile(rf"^{re.escape(URL)}/view\?.*$")
            mocked.get(view, body=b"x" * 5000)
            mocked.get(view, status=404)
            mocked.get(view, body=b"{}", content_type="application/json")
            with pytest.raises(BadResponse, match="larger than 1000 bytes"):
                await client.download("big.png", max_bytes=1000)
            with pytest.raises(BadResponse, match=r"no output file 'gone\.png'"):
                await client.download("gone.png")
            assert await client.download("small.png") == b"{}"


async def test_malformed_answers_are_bad_responses() -> None:
    async with ComfyClient(backend(URL), idle_reconcile_s=None) as client:
        with aioresponses() as mocked:
            mocked.get(f"{URL}/system_stats", body="<html>proxy error</html>")
            mocked.get(f"{URL}/history/abc", status=403)
            with pytest.raises(BadResponse, match="did not answer JSON"):
                await client.system_stats()
            with pytest.raises(BadResponse, match="HTTP 403"):
                await client.history("abc")


# ---------------------------------------------------------------------------- frames and progress


def test_error_details_are_trimmed_to_the_message() -> None:
    frame = json.dumps(
        {
            "type": "execution_error",
            "data": {
                "prompt_id": "p",
                "node_id": "4",
                "node_type": "ImageBatch",
                "exception_type": "RuntimeError",
                "exception_message": "Expected all tensors on one device: tensor([[0.1, 0.2]] * 999)\n",
                "traceback": ["  File a.py\n", "  File nodes.py, line 3, in batch\n    torch.cat(x)\n"],
                "current_inputs": {"image1": ["tensor(" + "0., " * 5000 + ")"]},
            },
        }
    )
    failed = parse_text_frame(frame)

    assert failed == Failed(
        "p",
        "4",
        "ImageBatch",
        "RuntimeError",
        "Expected all tensors on one device",
        "File nodes.py, line 3, in batch torch.cat(x)",
    )


def test_rejection_bodies_that_are_not_comfyui_json_are_still_readable() -> None:
    from_proxy = PromptRejected.from_body("<html>413 Request Entity Too Large</html>")
    plain_error = PromptRejected.from_body({"error": "prompt is too big", "node_errors": {}})

    assert from_proxy.lines == ("ComfyUI rejected the workflow: <html>413 Request Entity Too Large</html>",)
    assert str(plain_error) == "prompt is too big"


def test_unknown_and_malformed_frames_are_ignored() -> None:
    assert parse_text_frame('{"type": "crystools.monitor", "data": {"cpu": 3}}') is None
    assert parse_text_frame("not json") is None
    assert parse_text_frame('{"type": "progress", "data": {"value": "x"}}') is None
    assert parse_text_frame('{"type": "executing", "data": {"node": "3"}}') == Executing("", "3")
    assert parse_text_frame(
        '{"type": "executing", "data": {"node": 7, "prompt_id": "p", "new": 1}}'
    ) == Executing("p", "7")
    status = '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "me"}}'
    assert parse_text_frame(status) == StatusUpdate(2, "me")
    assert parse_binary_frame(b"\x00\x00") is None
    assert parse_binary_frame(struct.pack(">II", 9, 0) + b"?") is None
    assert parse_binary_frame(struct.pack(">II", 4, 999) + b"{}") is None


def test_binary_frames_of_every_kind_are_parsed() -> None:
    legacy = parse_binary_frame(struct.pack(">II", 1, 2) + b"\x89PNG")
    meta = json.dumps(
        {"node_id": "3", "prompt_id": "p", "display_node_id": "3", "image_type": "image/jpeg"}
    ).encode()
    modern = parse_binary_frame(struct.pack(">II", 4, len(meta)) + meta + b"\xff\xd8")
    text = parse_binary_frame(struct.pack(">II", 3, 2) + b"12hello")

    assert legacy == Preview("", None, b"\x89PNG", "image/png")
    assert modern == Preview("p", "3", b"\xff\xd8", "image/jpeg")
    assert text is not None and (text.node, text.text) == ("12", "hello")


def test_progress_tracker_spans_two_samplers_with_an_eta() -> None:
    now = [0.0]
    tracker = ProgressTracker.from_graph(hires(steps=4, hires_steps=2), clock=lambda: now[0])
    snapshots = []
    for time_s, node, value, maximum in [
        (1.0, "3", 1, 4),
        (1.5, "3", 2, 4),
        (2.0, "3", 3, 4),
        (2.5, "3", 4, 4),
    ]:
        now[0] = time_s
        snapshots.append(tracker.update(Progress("p", node, value, maximum)))

    last = snapshots[-1]
    assert last is not None
    assert (last.step, last.total_steps, last.node) == (4, 6, "3")
    assert last.fraction == pytest.approx(4 / 6) and last.eta_s == pytest.approx(1.0)
    now[0] = 4.0
    second = tracker.update(Progress("p", "11", 1, 2))
    assert second is not None and (second.step, second.fraction) == (5, pytest.approx(5 / 6))
    assert tracker.update(Progress("p", "99", 1, 1)) is None  # not a sampler
    final = tracker.update(Succeeded("p"))
    assert final is not None and (final.fraction, final.eta_s) == (1.0, 0.0)


def test_progress_tracker_guesses_unknown_sampler_lengths_and_skips_cached_ones() -> None:
    tracker = ProgressTracker(["3", "11"], clock=lambda: 0.0)
    snapshot = tracker.update(Progress("p", "3", 5, 10))
    assert snapshot is not None and (snapshot.total_steps, snapshot.fraction) == (20, 0.25)
    snapshot = tracker.update(Cached("p", ("11",)))
    assert snapshot is not None and (snapshot.total_steps, snapshot.fraction) == (10, 0.5)
    assert sampler_steps(hires()) == {"3": 4, "11": 2}


async def test_hires_workflow_reports_overall_progress_end_to_end(client) -> None:
    graph = hires(seed=11, steps=4, hires_steps=3)
    tracker = ProgressTracker.from_graph(graph)
    watch = await submit(client, graph)

    fractions = [
        snap.fraction for event in await collect(watch) if (snap := tracker.update(event)) is not None
    ]
    outcome = await watch.result()

    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert tracker.snapshot().step == 7
    png = Image.open(io.BytesIO(await client.download_image(outcome.images[0])))
    assert png.size == (128, 128)


def test_backoff_grows_and_is_capped() -> None:
    delays = [exponential_backoff(attempt, rand=lambda: 1.0) for attempt in (1, 2, 3, 10)]
    assert delays == [0.5, 1.0, 2.0, 30.0]
    assert exponential_backoff(3, rand=lambda: 0.0) == 1.0
