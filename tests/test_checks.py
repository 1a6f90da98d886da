"""`run_checks` against the fake ComfyUI: reachability, version, checkpoints, templates, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from bot.checks import run_checks
from bot.config import Config, load_config

TXT2IMG = Path(__file__).resolve().parent.parent / "comfy" / "templates" / "txt2img.json"
BLEND = TXT2IMG.with_name("blend.json")

CONFIG = """
[discord]
token = "t.o.k"

[[backends]]
name = "gpu0"
url = "{url}"
timeout_s = 5

[[models]]
name = "tiny"
checkpoint = "{checkpoint}"
width = 64
height = 64
{model_extra}
{extra}
"""


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(
        url: str,
        *,
        checkpoint: str = "random_sd15_tiny.safetensors",
        model_extra: str = "",
        extra: str = "",
    ) -> Config:
        path = tmp_path / "config.toml"
        text = CONFIG.format(url=url, checkpoint=checkpoint, model_extra=model_extra, extra=extra)
        path.write_text(text, encoding="utf-8")
        return load_config(path, env={})

    return make


def custom_template(tmp_path: Path, *, replace_class: str | None = None) -> str:
    """A txt2img template file (the built-in graph), its VAE decoder optionally swapped for another class."""
    graph = json.loads(TXT2IMG.read_text(encoding="utf-8"))
    if replace_class is not None:
        graph["8"]["class_type"] = replace_class
    (tmp_path / "fancy.json").write_text(json.dumps(graph), encoding="utf-8")
    return """
[[templates]]
name = "fancy"
kind = "txt2img"
path = "fancy.json"
bindings = { positive = "Positive.text", seed = "Sampler.seed", checkpoint = "Load Checkpoint.ckpt_name" }
"""


async def test_all_ok_names_the_version_and_each_models_checkpoint(fake, make_config) -> None:
    report = await run_checks(make_config(fake.url))

    assert report.exit_code == 0, report.lines()
    assert report.lines() == [
        f"backend gpu0 ({fake.url}): ok, ComfyUI 0.3.64, checkpoints: tiny ok",
        "all checks passed",
    ]
    assert "GET /object_info" in fake.requests


async def test_missing_checkpoint_is_named_with_a_few_available_ones(fake, make_config) -> None:
    fake.checkpoints = [f"model_{i}.safetensors" for i in range(8)] + ["random_sd15_tiny_v2.safetensors"]

    report = await run_checks(make_config(fake.url))

    assert report.exit_code == 1
    head = f"backend gpu0 ({fake.url}): "
    assert report.lines() == [
        head + "reachable, ComfyUI 0.3.64, checkpoints: tiny missing",
        head + "model tiny: checkpoint 'random_sd15_tiny.safetensors' not found (available: "
        "random_sd15_tiny_v2.safetensors, model_0.safetensors, model_1.safetensors, model_2.safetensors, "
        "model_3.safetensors and 4 more)",
    ]


async def test_template_node_class_missing_on_the_backend_fails(fake, make_config, tmp_path) -> None:
    extra = custom_template(tmp_path, replace_class="FancyDecoder")
    config = make_config(fake.url, model_extra='templates = { txt2img = "fancy" }', extra=extra)

    report = await run_checks(config)

    assert report.exit_code == 1
    [problem] = report.backends[0].problems
    assert problem.startswith("template 'fancy': node 8 (")
    assert "node class 'FancyDecoder' does not exist on this ComfyUI" in problem


async def test_every_kind_a_model_uses_is_checked(fake, make_config, tmp_path) -> None:
    del fake.object_info["ImagePadForOutpaint"]  # zoom and pan need it

    report = await run_checks(make_config(fake.url))

    problems = report.backends[0].problems
    assert report.exit_code == 1
    assert sorted(p.split(":")[0] for p in problems) == ["template 'pan'", "template 'zoom'"]
    assert all("'ImagePadForOutpaint' does not exist" in p for p in problems)


async def test_builtin_blend_is_checked_for_every_model(fake, make_config) -> None:
    del fake.object_info["ImageBlend"]

    report = await run_checks(make_config(fake.url))

    problems = report.backends[0].problems
    assert report.exit_code == 1
    assert [p.split(":")[1].strip() for p in problems] == [
        f"node 4{k} ('Mix {k}', ImageBlend)" for k in range(2, 6)
    ]
    assert all(p.startswith("template 'blend'") and "'ImageBlend' does not exist" in p for p in problems)


def blend_template(tmp_path: Path, *, replace_class: str | None = None) -> str:
    """An operator's blend template (the built-in graph), its mixing node optionally swapped for another class."""
    graph = json.loads(BLEND.read_text(encoding="utf-8"))
    if replace_class is not None:
        graph["45"]["class_type"] = replace_class
    (tmp_path / "my_blend.json").write_text(json.dumps(graph), encoding="utf-8")
    images = ", ".join(
        f'{name} = "Image {k}.image"'
        for k, name in enumerate(["image", *(f"image_{i}" for i in range(2, 6))], 1)
    )
    factors = ", ".join(f'blend_factor_{k} = "Mix {k}.blend_factor"' for k in range(2, 6))
    return f"""
[[templates]]
name = "my_blend"
kind = "blend"
path = "my_blend.json"
bindings = {{ {images}, {factors}, positive = "Positive.text", seed = "Sampler.seed", checkpoint = "Load Checkpoint.ckpt_name" }}
"""


async def test_operator_blend_template_is_checked_against_the_backend(fake, make_config, tmp_path) -> None:
    model_extra = 'templates = { blend = "my_blend" }'
    fits = make_config(fake.url, model_extra=model_extra, extra=blend_template(tmp_path))
    assert (await run_checks(fits)).exit_code == 0

    broken = make_config(
        fake.url, model_extra=model_extra, extra=blend_template(tmp_path, replace_class="MixFive")
    )
    report = await run_checks(broken)

    assert report.exit_code == 1
    [problem] = report.backends[0].problems
    assert problem.startswith("template 'my_blend': node 45 ('Mix 5', MixFive)")


async def test_blend_template_binding_too_few_slots_is_a_config_problem(fake, make_config, tmp_path) -> None:
    (tmp_path / "two.json").write_text(BLEND.read_text(encoding="utf-8"), encoding="utf-8")
    extra = """
[[templates]]
name = "two"
kind = "blend"
path = "two.json"
bindings = { image = "Image 1.image", image_2 = "Image 2.image", blend_factor_2 = "Mix 2.blend_factor" }
"""
    report = await run_checks(make_config(fake.url, extra=extra))

    assert report.exit_code == 2
    [problem] = report.config_problems
    assert "a template of kind 'blend' must bind 'image_3'" in problem


async def test_custom_template_that_fits_passes(fake, make_config, tmp_path) -> None:
    config = make_config(
        fake.url, model_extra='templates = { txt2img = "fancy" }', extra=custom_template(tmp_path)
    )

    report = await run_checks(config)

    assert report.exit_code == 0, report.lines()


async def test_template_that_cannot_be_loaded_is_a_config_problem(fake, make_config, tmp_path) -> None:
    extra = custom_template(tmp_path)
    (tmp_path / "fancy.json").write_text("{not json", encoding="utf-8")

    report = await run_checks(make_config(fake.url, extra=extra))

    assert report.exit_code == 2
    [problem] = report.config_problems
    assert problem.startswith("templates: templates[0] (") and "not valid JSON" in problem
    assert report.backends[0].reachable  # the backend is still checked (with the built-ins)


async def test_model_naming_an_unknown_template_is_a_config_problem(fake, make_config) -> None:
    report = await run_checks(make_config(fake.url, model_extra='templates = { upscale = "nope" }'))

    assert report.exit_code == 2
    assert report.config_problems == [
        "models: model 'tiny': templates.upscale = 'nope' is not a known template; known: "
        "blend, img2img, pan, txt2img, upscale, variation, zoom"
    ]


async def test_unreachable_backend_fails_with_the_reason(make_config, unused_tcp_port: int) -> None:
    report = await run_checks(make_config(f"http://127.0.0.1:{unused_tcp_port}"))

    assert report.exit_code == 1
    [line] = report.lines()
    assert line.startswith(f"backend gpu0 (http://127.0.0.1:{unused_tcp_port}): unreachable: cannot connect")
    assert "is ComfyUI running there?" in line


async def test_server_error_on_system_stats_is_unreachable(fake, make_config) -> None:
    fake.http_error = 500

    report = await run_checks(make_config(fake.url))

    assert report.lines() == [
        f"backend gpu0 ({fake.url}): unreachable: GET /system_stats answered HTTP 500",
    ]


async def test_backend_without_object_info_is_only_a_warning(make_config) -> None:
    async def system_stats(_: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.3.10"}, "devices": []})

    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        report = await run_checks(make_config(url))
    finally:
        await runner.cleanup()

    assert report.exit_code == 0
    assert report.lines() == [
        f"backend gpu0 ({url}): ok, ComfyUI 0.3.10",
        f"backend gpu0 ({url}): warning: cannot read /object_info (GET /object_info answered HTTP 404), "
        "so checkpoints and templates were not checked",
        "all checks passed (1 warning(s))",
    ]
