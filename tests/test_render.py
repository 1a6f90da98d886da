"""Requests and follow-up actions become template values that render into valid built-in graphs."""

from __future__ import annotations

import json
import random
import re

import pytest

from comfy.actions import ACTIONS, OUTPAINT_ACTIONS, REROLL, Action, action_named
from comfy.outpaint import OUTPAINT_ACTIONS as OUTPAINT_NAMES
from comfy.params import ParseContext, blend_request, parse_prompt
from comfy.profiles import TEMPLATE_KINDS, ModelProfile
from comfy.render import (
    MAX_CANVAS_SIDE,
    RenderError,
    RenderProblem,
    SourceImage,
    blend_template_values,
    kind_for,
    template_values,
)
from comfy.workflow import load_builtin_templates

MODEL = ModelProfile(name="tiny", checkpoint="tiny.safetensors", width=512, height=512, steps=8)
HOSTILE = 'a "quoted" {braces} \\ back\\slash ", "class_type": "Evil'


def _request(text: str = "a red fox --ar 3:2 --seed 42 --no blur"):
    return parse_prompt(text, ParseContext(models=[MODEL], rng=random.Random(1)))[0]


def test_a_fresh_prompt_renders_txt2img_with_its_size_seed_and_batch_of_four() -> None:
    values = template_values(_request(), filename_prefix="comfy-imagine/job_1")
    graph = load_builtin_templates()["txt2img"].render(values)
    latent = next(n for n in graph.values() if n["class_type"] == "EmptyLatentImage")["inputs"]
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    assert latent["width"] / latent["height"] == pytest.approx(1.5, rel=0.05)
    assert latent["batch_size"] == 4
    assert sampler["seed"] == 42


def test_hostile_prompt_text_reaches_the_positive_clip_node_literally() -> None:
    request = _request(HOSTILE + " --seed 3")
    graph = load_builtin_templates()["txt2img"].render(template_values(request, filename_prefix="p"))
    texts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
    assert HOSTILE in texts
    assert json.loads(json.dumps(graph)) == graph
    assert len(graph) == len(load_builtin_templates()["txt2img"].graph)


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("upscale_2x", "upscale"),
        ("vary_strong", "variation"),
        ("vary_subtle", "variation"),
        ("zoom_2", "zoom"),
        ("pan_left", "pan"),
    ],
)
def test_follow_up_actions_render_their_templates(action: str, kind: str) -> None:
    assert kind_for(action) == kind
    source = SourceImage(name="parent_0.png", width=512, height=512)
    values = template_values(_request(), filename_prefix="p", action=action, source=source)
    graph = load_builtin_templates()[kind].render(values)
    loads = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    assert loads == ["parent_0.png"]
    if action == "vary_subtle":
        assert (
            values["denoise"]
            < template_values(_request(), filename_prefix="p", action="vary_strong", source=source)["denoise"]
        )


def test_a_pan_past_the_largest_canvas_is_refused_readably() -> None:
    source = SourceImage(name="x.png", width=MAX_CANVAS_SIDE, height=512)
    with pytest.raises(RenderError) as caught:
        template_values(_request(), filename_prefix="p", action="pan_right", source=source)
    assert (caught.value.problem, caught.value.side) == (RenderProblem.CANVAS_TOO_LARGE, MAX_CANVAS_SIDE)


def test_an_image_prompt_uses_img2img_at_the_requested_size() -> None:
    assert kind_for(None, has_image=True) == "img2img"
    values = template_values(_request(), filename_prefix="p", source=SourceImage("in.png", 300, 200))
    assert (values["width"], values["height"]) == (_request().width, _request().height)


IMAGE_ACTIONS = [a for a in ACTIONS if a.from_image]


def test_the_action_table_has_unique_names_fit_for_custom_ids_and_known_template_kinds() -> None:
    names = [a.name for a in ACTIONS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_.]{1,20}", name) for name in names), names
    assert {a.template for a in IMAGE_ACTIONS} <= set(TEMPLATE_KINDS)
    assert [a for a in ACTIONS if not a.from_image] == [REROLL]
    assert action_named(REROLL.name) is REROLL and action_named("delete_everything") is None
    assert OUTPAINT_NAMES == tuple(a.name for a in OUTPAINT_ACTIONS)
    assert {a.template for a in OUTPAINT_ACTIONS} == {"zoom", "pan"}


@pytest.mark.parametrize("action", IMAGE_ACTIONS, ids=lambda a: a.name)
def test_every_image_action_of_the_table_renders_its_template_from_the_parent_image(action: Action) -> None:
    assert kind_for(action.name) == action.template
    source = SourceImage(name="parent_0.png", width=512, height=512)
    values = template_values(_request(), filename_prefix="p", action=action.name, source=source)
    graph = load_builtin_templates()[kind_for(action.name)].render(values)
    loads = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    assert loads == ["parent_0.png"]
    assert values["denoise"] == action.denoise
    assert values["seed"] == _request().seed  # the caller draws a new seed where the action wants one


def test_a_reroll_is_no_template_of_its_own() -> None:
    with pytest.raises(RenderError) as caught:
        kind_for(REROLL.name)
    assert (caught.value.problem, caught.value.action) == (RenderProblem.UNKNOWN_ACTION, REROLL.name)


def test_a_custom_zoom_pads_by_the_prompts_zoom_and_offers_its_own_by_default() -> None:
    source = SourceImage(name="parent_0.png", width=512, height=512)
    custom = parse_prompt("a fox --zoom 1.5", ParseContext(models=[MODEL], custom_zoom=True))[0]
    zoomed = template_values(custom, filename_prefix="p", action="zoom_custom", source=source)
    offered = template_values(_request(), filename_prefix="p", action="zoom_custom", source=source)
    assert [zoomed[f"pad_{side}"] for side in ("left", "right", "top", "bottom")] == [128] * 4
    assert (zoomed["width"], zoomed["height"]) == (512, 512)
    assert offered["pad_left"] == 256  # the row's zoom, 2
    # A fixed zoom ignores a zoom the request carries (a job made from a Custom Zoom's image).
    assert template_values(custom, filename_prefix="p", action="zoom_2", source=source)["pad_left"] == 256


def test_a_blend_renders_the_blend_template_with_every_image_at_the_requests_size() -> None:
    request = blend_request(ParseContext(models=[MODEL], rng=random.Random(2)), (2, 3))
    values = blend_template_values(request, filename_prefix="p", images=["a.png", "b.png", "c.png"])
    graph = load_builtin_templates()["blend"].render(values)
    loads = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    sizes = {
        (n["inputs"]["width"], n["inputs"]["height"])
        for n in graph.values()
        if n["class_type"] == "ImageScale"
    }
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    assert loads == ["a.png", "b.png", "c.png", "a.png", "a.png"]
    assert sizes == {(request.width, request.height)} and request.height > request.width
    assert (sampler["seed"], sampler["denoise"]) == (request.seed, values["denoise"]) and values[
        "denoise"
    ] < 1
