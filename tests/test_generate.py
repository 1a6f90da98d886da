"""`comfy-imagine generate` against the fake ComfyUI: files, graphs, progress, faults, exit codes, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from bot.config import Config, load_config
from bot.generate import (
    EXIT_BACKEND,
    EXIT_OK,
    EXIT_USAGE,
    GenerateError,
    SetupError,
    generate,
    generate_command,
)
from bot.terminal_progress import TerminalProgress
from cogs._words.params import param_error_text
from comfy.params import ParamError, ParamProblem
from comfy.progress import ProgressSnapshot
from tests.cli import run_cli

T = TypeVar("T")

CONFIG = """
[[backends]]
name = "{name}"
url = "{url}"
timeout_s = 5
{more_backends}
[[models]]
name = "tiny"
checkpoint = "{checkpoint}"
width = 512
height = 512
steps = 4
cfg = 7.0
sampler = "euler"
scheduler = "normal"
negative = "lowres"

[[models]]
name = "other"
checkpoint = "v1-5-pruned-emaonly.safetensors"
steps = 3
"""
FOX = "a red fox --ar 3:2 --seed 42 --no blur"


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(
        url: str,
        *,
        name: str = "gpu0",
        more_backends: str = "",
        checkpoint: str = "random_sd15_tiny.safetensors",
    ) -> Config:
        path = tmp_path / "config.toml"
        text = CONFIG.format(url=url, name=name, more_backends=more_backends, checkpoint=checkpoint)
        path.write_text(text, encoding="utf-8")
        return load_config(path, env={})

    return make


async def within(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


def node_of(graph: dict[str, Any], class_type: str, title: str | None = None) -> dict[str, Any]:
    return next(
        node
        for node in graph.values()
        if node["class_type"] == class_type and (title is None or node["_meta"]["title"] == title)
    )


def dead_backend(port: int) -> str:
    return f'\n[[backends]]\nname = "dead"\nurl = "http://127.0.0.1:{port}"\ntimeout_s = 2\n'


# ---------------------------------------------------------------------------------------- files


async def test_fox_prompt_writes_four_images_of_its_shape_and_a_grid(fake, make_config, tmp_path) -> None:
    out = tmp_path / "out"

    result = await within(generate(make_config(fake.url), FOX, out))

    [job] = result.jobs
    assert (job.request.width, job.request.height) == (576, 384)  # exactly 3:2, near 512x512's area
    assert [p.name for p in job.images] == [f"a-red-fox_42_{i}.png" for i in range(1, 5)]
    for path in job.images:
        with Image.open(path) as image:
            assert image.size == (576, 384)
    assert job.grid == out / "a-red-fox_42_grid.png"
    with Image.open(job.grid) as grid:
        assert grid.size == (1152, 768)
    assert result.paths == (*job.images, job.grid)
    [graph] = fake.received_prompts
    assert node_of(graph, "KSampler")["inputs"]["seed"] == 42
    assert node_of(graph, "EmptyLatentImage")["inputs"] == {"width": 576, "height": 384, "batch_size": 4}
    assert node_of(graph, "CLIPTextEncode", "Positive")["inputs"]["text"] == "a red fox"
    assert node_of(graph, "CLIPTextEncode", "Negative")["inputs"]["text"] == "lowres, blur"


async def test_same_seed_on_a_fresh_server_gives_identical_bytes_under_new_names(
    fake, make_config, tmp_path
) -> None:
    config = make_config(fake.url)
    first = await within(generate(config, FOX, tmp_path))
    fake.reset()  # no cache: the second run is computed again
    second = await within(generate(config, FOX, tmp_path))

    assert len(fake.executed_prompt_ids) == 2
    assert fake.received_prompts[0] == fake.received_prompts[1]
    # Each PNG embeds the graph it was made from, so equal bytes also mean equal graphs.
    assert [p.read_bytes() for p in first.paths] == [p.read_bytes() for p in second.paths]
    assert second.jobs[0].images[0].name == "a-red-fox_42-2_1.png"  # nothing is overwritten


async def test_quotes_braces_and_backslashes_reach_the_text_encoder_literally(
    fake, make_config, tmp_path
) -> None:
    text = '"quotes" {braces} \\ backslashes'

    await within(generate(make_config(fake.url), f"{text} --seed 1", tmp_path))

    [graph] = fake.received_prompts
    assert node_of(graph, "CLIPTextEncode", "Positive")["inputs"]["text"] == text


async def test_repeat_posts_every_prompt_before_following_the_first(fake, make_config, tmp_path) -> None:
    fake.pause()
    task = asyncio.create_task(generate(make_config(fake.url), "a lighthouse --seed 5 --repeat 2", tmp_path))
    await within(fake.wait_paused())
    await within(fake.wait_until(lambda: len(fake.received_prompts) == 2))
    assert len(fake.pending_ids) == 1  # the second waits in ComfyUI's queue while the first runs
    fake.resume()

    result = await within(task)

    assert [job.request.seed for job in result.jobs] == [5, 6]
    assert [node_of(g, "KSampler")["inputs"]["seed"] for g in fake.received_prompts] == [5, 6]
    assert len(result.paths) == 10


async def test_model_option_picks_the_model_unless_the_prompt_names_one(fake, make_config, tmp_path) -> None:
    config = make_config(fake.url)

    await within(generate(config, "a cat --seed 1", tmp_path, model="OTHER"))
    await within(generate(config, "a cat --seed 1 --model tiny", tmp_path, model="other"))

    ckpts = [node_of(g, "CheckpointLoaderSimple")["inputs"]["ckpt_name"] for g in fake.received_prompts]
    assert ckpts == ["v1-5-pruned-emaonly.safetensors", "random_sd15_tiny.safetensors"]


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("a fox --foo 3", "Unknown parameter `--foo`"),
        ("a fox --ar 3x2", "`--ar` must be two whole numbers like `16:9`"),
        ("a fox --seed 4294967296", "`--seed` must be a whole number from 0 to 4294967295"),
        ("a fox --ar 9:1", "aspect ratio may go from 1:4 (tall) to 4:1 (wide)"),
    ],
)
async def test_bad_parameters_exit_2_with_the_reason_and_post_nothing(
    fake, make_config, tmp_path, capsys, prompt: str, message: str
) -> None:
    code = await within(
        generate_command(make_config(fake.url), prompt, tmp_path / "out", describe=param_error_text)
    )

    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert fake.received_prompts == [] and not (tmp_path / "out").exists()


async def test_sampler_names_are_checked_against_the_backend(fake, make_config, tmp_path) -> None:
    with pytest.raises(ParamError) as caught:
        await within(generate(make_config(fake.url), "a fox --sampler eulr", tmp_path))
    assert (caught.value.problem, caught.value.value) == (ParamProblem.UNKNOWN_NAME, "eulr")
    assert caught.value.choices[0] == "euler"
    assert fake.received_prompts == []


async def test_unknown_model_option_is_a_usage_error(fake, make_config, tmp_path) -> None:
    with pytest.raises(SetupError, match="unknown model 'sdxl' for --model; configured models: tiny, other"):
        await generate(make_config(fake.url), "a fox", tmp_path, model="sdxl")


# ---------------------------------------------------------------------------------------- backends


async def test_no_reachable_backend_exits_1_naming_each_url(
    make_config, tmp_path, capsys, unused_tcp_port_factory
) -> None:
    first, second = unused_tcp_port_factory(), unused_tcp_port_factory()
    config = make_config(f"http://127.0.0.1:{first}", more_backends=dead_backend(second))

    code = await within(generate_command(config, "a fox", tmp_path))

    err = capsys.readouterr().err
    assert code == EXIT_BACKEND
    assert "no ComfyUI backend could be reached" in err
    assert f"gpu0 (http://127.0.0.1:{first}): GET /system_stats failed: cannot connect" in err
    assert f"dead (http://127.0.0.1:{second}): GET /system_stats failed: cannot connect" in err
    assert "Traceback" not in err


async def test_unreachable_backend_is_skipped_for_the_next(
    fake, make_config, tmp_path, unused_tcp_port: int
) -> None:
    more = f'\n[[backends]]\nname = "live"\nurl = "{fake.url}"\n'
    config = make_config(f"http://127.0.0.1:{unused_tcp_port}", name="down", more_backends=more)

    result = await within(generate(config, "a fox --seed 3", tmp_path))

    assert result.backend == "live" and len(result.paths) == 5


async def test_rejected_workflow_exits_1_with_comfyuis_reason(fake, make_config, tmp_path, capsys) -> None:
    config = make_config(fake.url, checkpoint="missing.safetensors")

    code = await within(generate_command(config, "a fox", tmp_path))

    err = capsys.readouterr().err
    assert code == EXIT_BACKEND
    assert f"ComfyUI at {fake.url} rejected the workflow" in err
    assert "'missing.safetensors' is not available" in err


async def test_failed_execution_names_the_node_and_keeps_the_other_jobs(fake, make_config, tmp_path) -> None:
    fake.pause()
    task = asyncio.create_task(generate(make_config(fake.url), "a fox --seed 1 --repeat 2", tmp_path))
    await within(fake.wait_until(lambda: len(fake.received_prompts) == 2))
    fake.fail_node = "VAEDecode"  # the first is paused in its sampler; both fail after it
    fake.resume()

    with pytest.raises(GenerateError) as caught:
        await within(task)

    assert "[1/2] a fox (seed 1): ComfyUI failed in VAEDecode (node 8): RuntimeError: Sizes" in str(
        caught.value
    )
    assert "[2/2] a fox (seed 2)" in str(caught.value)
    assert caught.value.completed == ()


async def test_socket_dropped_mid_run_does_not_hang_and_still_writes_the_images(
    fake, make_config, tmp_path
) -> None:
    fake.pause()
    task = asyncio.create_task(generate(make_config(fake.url), FOX, tmp_path))
    await within(fake.wait_paused())
    await fake.drop_sockets()
    fake.resume()

    result = await within(task)

    assert len(result.jobs[0].images) == 4 and all(p.exists() for p in result.paths)
    assert len(fake.connections) == 2  # the client came back on its own


async def test_backend_that_stays_gone_mid_run_fails_within_the_grace(fake, make_config, tmp_path) -> None:
    fake.pause()
    task = asyncio.create_task(generate(make_config(fake.url), FOX, tmp_path, lost_after_s=0.3))
    await within(fake.wait_paused())
    await fake.stop()

    with pytest.raises(GenerateError, match=r"lost the connection to ComfyUI at .* within 0.3 s"):
        await within(task)


async def test_cancelling_generate_cancels_the_posted_prompts(fake, make_config, tmp_path) -> None:
    fake.pause()
    task = asyncio.create_task(generate(make_config(fake.url), "a fox --repeat 2", tmp_path))
    running, _, _ = await within(fake.wait_paused())
    await within(fake.wait_until(lambda: len(fake.pending_ids) == 1))
    waiting = fake.pending_ids[0]

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)

    assert fake.deleted_prompt_ids == [waiting]
    assert running in fake.interrupt_requests and fake.global_interrupts == 0
    assert fake.executed_prompt_ids == [running]


# ---------------------------------------------------------------------------------------- progress


def snapshot(step: int, total: int = 20, eta: float | None = 5.0) -> ProgressSnapshot:
    return ProgressSnapshot(step / total, step, total, "3", eta)


def test_progress_off_a_terminal_prints_one_line_per_tenth() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, tty=False, clock=lambda: 0.0)
    progress.begin("[1/1] a fox (seed 1)")
    for step in range(1, 21):
        progress.update(snapshot(step))
    progress.end("done")

    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "[1/1] a fox (seed 1): waiting in ComfyUI's queue"
    assert lines[1] == "[1/1] a fox (seed 1): step 1/20   5% ETA 5s"
    assert len(lines) == 1 + 11 + 1  # 5 %, then 10 % ... 100 %
    assert lines[-2] == "[1/1] a fox (seed 1): step 20/20 100%"
    assert lines[-1] == "[1/1] a fox (seed 1): done (0.0 s)"


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, tty=True, width=10, clock=lambda: 0.0)
    progress.begin("[1/1] x (seed 1)")
    progress.update(snapshot(10, eta=75))
    progress.end("done")

    parts = stream.getvalue().split("\r\x1b[K")
    assert parts[2] == "[1/1] x (seed 1) [#####-----] step 10/20  50% ETA 1m15s"
    assert stream.getvalue().count("\n") == 1 and stream.getvalue().endswith("done (0.0 s)\n")


# ---------------------------------------------------------------------------------------- the real CLI


async def test_cli_prints_the_written_paths_without_a_token(fake, make_config, tmp_path) -> None:
    make_config(fake.url)
    out = tmp_path / "images"

    code, stdout, stderr = await run_cli(
        "generate", FOX, "--config", str(tmp_path / "config.toml"), "--out", str(out)
    )

    assert code == EXIT_OK, stderr
    paths = [Path(line) for line in stdout.splitlines()]
    assert [p.name for p in paths] == [
        *(f"a-red-fox_42_{i}.png" for i in range(1, 5)),
        "a-red-fox_42_grid.png",
    ]
    assert all(p.parent == out and p.is_file() for p in paths)
    assert "[1/1] a red fox (seed 42): done" in stderr


async def test_cli_bad_parameter_exits_2_without_a_traceback(fake, make_config, tmp_path) -> None:
    make_config(fake.url)

    code, stdout, stderr = await run_cli(
        "generate", "a fox --seed -1", "--config", str(tmp_path / "config.toml"), "--out", str(tmp_path)
    )

    assert code == EXIT_USAGE and stdout == ""
    assert "error: `--seed` must be a whole number from 0 to 4294967295; you gave `-1`." in stderr
    assert "Traceback" not in stderr


async def test_cli_ctrl_c_cancels_the_posted_prompts_and_exits_130(fake, make_config, tmp_path) -> None:
    make_config(fake.url)
    fake.pause()

    async def interrupt_when_running(proc: asyncio.subprocess.Process) -> None:
        await within(fake.wait_paused(), 20)
        await within(fake.wait_until(lambda: len(fake.pending_ids) == 1))
        proc.send_signal(signal.SIGINT)

    code, stdout, stderr = await run_cli(
        "generate",
        "a fox --repeat 2",
        "--config",
        str(tmp_path / "config.toml"),
        "--out",
        str(tmp_path),
        started=interrupt_when_running,
    )

    assert code == 130, stderr
    assert stdout == "" and "Traceback" not in stderr
    [running, waiting] = [body["prompt_id"] for body in fake.received_bodies]
    assert fake.deleted_prompt_ids == [waiting]
    assert running in fake.interrupt_requests and fake.global_interrupts == 0
    assert fake.executed_prompt_ids == [running]
