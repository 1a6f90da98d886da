"""Tests for workflow templates: built-ins against a real /object_info, rendering, loading, registry."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfy.blend import BLEND_DENOISE, blend_values
from comfy.object_info import check_against_object_info, samplers_and_schedulers
from comfy.outpaint import OUTPAINT_ACTIONS, outpaint_padding
from comfy.profiles import TEMPLATE_KINDS, ModelProfile, TemplateConfig
from comfy.workflow import TemplateRegistry, load_builtin_templates, load_template
from comfy.workflow_template import Binding, TemplateError, WorkflowTemplate

DATA = Path(__file__).parent / "data"
HOSTILE = 'a "cat" }, {\\ \n\t", "class_type": "SaveImage", "inputs": {}}, "99": {"x": [\\"4\\", 0]} %date% \u202e\x00'

BASE_VALUES: dict[str, Any] = {
    "positive": "a lighthouse at dusk",
    "negative": "people",
    "seed": 7,
    "steps": 25,
    "cfg": 6.5,
    "sampler": "dpmpp_2m",
    "scheduler": "karras",
    "width": 768,
    "height": 512,
    "batch_size": 4,
    "checkpoint": "sd15.safetensors",
    "denoise": 0.45,
    "image": "sub/bot_upload.png",
    "scale_by": 2.0,
    "pad_left": 256,
    "pad_right": 0,
    "pad_top": 0,
    "pad_bottom": 0,
    "feathering": 40,
    "filename_prefix": "comfy-imagine/job_12",
    "image_2": "sub/second.png",
    "image_3": "sub/bot_upload.png",
    "image_4": "sub/bot_upload.png",
    "image_5": "sub/bot_upload.png",
    "blend_factor_2": 0.5,
    "blend_factor_3": 0.0,
    "blend_factor_4": 0.0,
    "blend_factor_5": 0.0,
}
BLEND_IMAGES = ["a.png", "b.png", "c.png", "d.png", "e.png"]


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    return json.loads((DATA / "object_info.json").read_text())


@pytest.fixture(scope="module")
def builtins() -> dict[str, WorkflowTemplate]:
    return load_builtin_templates()


def _node(class_type: str, title: str | None, **inputs: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"inputs": inputs, "class_type": class_type}
    if title is not None:
        node["_meta"] = {"title": title}
    return node


def _sdxl_graph() -> dict[str, Any]:
    """An operator's export: two nodes share the title 'Prompt', one has a dotted title, one none."""
    return {
        "3": _node("KSampler", "Sampler", seed=1, steps=30, cfg=5.0, sampler_name="euler", scheduler="normal",
                   denoise=1.0, model=["4", 0], positive=["6", 0], negative=["7", 0], latent_image=["5", 0]),
        "4": _node("CheckpointLoaderSimple", "Load v1.5", ckpt_name="sdxl.safetensors"),
        "5": _node("EmptyLatentImage", "Empty Latent Image", width=1024, height=1024, batch_size=4),
        "6": _node("CLIPTextEncode", "Prompt", text="", clip=["4", 1]),
        "7": _node("CLIPTextEncode", "Prompt", text="", clip=["4", 1]),
        "8": _node("VAEDecode", None, samples=["3", 0], vae=["4", 2]),
        "9": _node("SaveImage", "Save Image", filename_prefix="ComfyUI", images=["8", 0]),
    }  # fmt: skip


def _write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return name


def _config(path: str, bindings: dict[str, str | list[str]], **extra: Any) -> TemplateConfig:
    fields: dict[str, Any] = {"name": "my_sdxl", "kind": "txt2img", "path": path, "bindings": bindings}
    return TemplateConfig(**{**fields, **extra})


SDXL_BINDINGS: dict[str, str | list[str]] = {"positive": "6.text", "negative": "7.text", "seed": "3.seed"}


# --- built-ins against the real ComfyUI 0.3.64 /object_info ------------------------------------------


def test_builtins_cover_every_kind_with_matching_names(builtins: dict[str, WorkflowTemplate]) -> None:
    assert set(builtins) == set(TEMPLATE_KINDS)
    for name, template in builtins.items():
        assert template.kind == name
        assert template.source == "<built-in>"
        assert not template.supports_tile


def test_builtin_nodes_inputs_and_links_match_real_object_info(
    builtins: dict[str, WorkflowTemplate], object_info: dict[str, Any]
) -> None:
    for name, template in builtins.items():
        for node_id, node in template.graph.items():
            spec = object_info[node["class_type"]]["input"]
            known = {**spec.get("required", {}), **spec.get("optional", {})}
            assert set(spec["required"]) <= set(node["inputs"]), (name, node_id)
            assert set(node["inputs"]) <= set(known), (name, node_id)
            for input_name, value in node["inputs"].items():
                if isinstance(value, tuple):
                    source = template.graph[value[0]]
                    produced = object_info[source["class_type"]]["output"][value[1]]
                    assert produced == known[input_name][0], (name, node_id, input_name)
        for param, targets in template.bindings.items():
            for target in targets:
                class_type = template.graph[target.node_id]["class_type"]
                assert target.input in object_info[class_type]["input"]["required"], (name, param)


def test_builtins_pass_check_when_backend_has_the_checkpoint(
    builtins: dict[str, WorkflowTemplate], object_info: dict[str, Any]
) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sd15.safetensors"]
    for template in builtins.values():
        assert check_against_object_info(template, info, "sd15.safetensors") == []


def test_builtins_have_one_sampler_and_one_save_node(builtins: dict[str, WorkflowTemplate]) -> None:
    for template in builtins.values():
        assert [template.graph[i]["class_type"] for i in template.sampler_node_ids()] == ["KSampler"]
        assert [template.graph[i]["class_type"] for i in template.output_node_ids()] == ["SaveImage"]


def test_builtin_batch_sizes_and_denoise_defaults(builtins: dict[str, WorkflowTemplate]) -> None:
    rendered = {name: t.render(BASE_VALUES | {"denoise": None}) for name, t in builtins.items()}
    assert rendered["txt2img"]["5"]["inputs"]["batch_size"] == 4
    assert rendered["upscale"]["3"]["inputs"]["denoise"] == pytest.approx(0.35)
    assert rendered["upscale"]["11"]["inputs"]["scale_by"] == 2.0
    for name in ("img2img", "variation", "zoom", "pan", "blend"):
        assert rendered[name]["13"]["inputs"]["amount"] == 4
    for name in ("zoom", "pan"):
        assert rendered[name]["3"]["inputs"]["denoise"] == 1.0
    assert rendered["blend"]["3"]["inputs"]["denoise"] == BLEND_DENOISE


def test_variation_denoise_is_the_callers_strength(builtins: dict[str, WorkflowTemplate]) -> None:
    strong = builtins["variation"].render(BASE_VALUES | {"denoise": 0.75})
    subtle = builtins["variation"].render(BASE_VALUES | {"denoise": 0.45})
    assert strong["3"]["inputs"]["denoise"] == 0.75
    assert subtle["3"]["inputs"]["denoise"] == 0.45


def test_outpaint_render_sets_pads_and_both_resize_nodes(builtins: dict[str, WorkflowTemplate]) -> None:
    values = BASE_VALUES | outpaint_padding(512, 512, "pan_left")
    graph = builtins["pan"].render(values)
    pad = graph["14"]["inputs"]
    assert (pad["left"], pad["right"], pad["top"], pad["bottom"]) == (256, 0, 0, 0)
    for node_id in ("15", "17"):
        assert (graph[node_id]["inputs"]["width"], graph[node_id]["inputs"]["height"]) == (768, 512)
    assert graph["10"]["inputs"]["image"] == "sub/bot_upload.png"


# --- blend: 2 to 5 images in five slots ------------------------------------------------------------


def _weights(graph: dict[str, Any]) -> dict[str, float]:
    """How much each loaded file weighs in the blend graph's mixed picture, following its ImageBlend chain."""

    def weights_of(link: Any) -> dict[str, float]:
        node = graph[link[0]]
        if node["class_type"] == "LoadImage":
            return {node["inputs"]["image"]: 1.0}
        if node["class_type"] == "ImageScale":
            return weights_of(node["inputs"]["image"])
        assert node["class_type"] == "ImageBlend" and node["inputs"]["blend_mode"] == "normal"
        factor = node["inputs"]["blend_factor"]
        mixed: dict[str, float] = {}
        for part, scale in ((node["inputs"]["image1"], 1 - factor), (node["inputs"]["image2"], factor)):
            for name, weight in weights_of(part).items():
                mixed[name] = mixed.get(name, 0.0) + weight * scale
        return mixed

    (encode,) = [n for n in graph.values() if n["class_type"] == "VAEEncode"]
    return {name: weight for name, weight in weights_of(encode["inputs"]["pixels"]).items() if weight}


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_blend_weighs_every_given_image_equally(builtins: dict[str, WorkflowTemplate], count: int) -> None:
    images = BLEND_IMAGES[:count]
    graph = builtins["blend"].render(BASE_VALUES | blend_values(images, width=512, height=768))

    assert _weights(graph) == pytest.approx(dict.fromkeys(images, 1 / count))
    assert set(graph) == set(builtins["blend"].graph)  # one shape for any count: nothing pruned


def test_blend_renders_two_images_into_the_five_slots(builtins: dict[str, WorkflowTemplate]) -> None:
    graph = builtins["blend"].render(BASE_VALUES | blend_values(["a.png", "b.png"], width=512, height=768))

    loads = {
        n["_meta"]["title"]: n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"
    }
    assert loads == {
        f"Image {k}": name for k, name in enumerate(["a.png", "b.png", "a.png", "a.png", "a.png"], 1)
    }
    factors = [graph[f"4{k}"]["inputs"]["blend_factor"] for k in range(2, 6)]
    assert factors == [0.5, 0.0, 0.0, 0.0]
    sizes = {
        (n["inputs"]["width"], n["inputs"]["height"])
        for n in graph.values()
        if n["class_type"] == "ImageScale"
    }
    assert sizes == {(512, 768)}
    assert (graph["3"]["inputs"]["denoise"], graph["13"]["inputs"]["amount"]) == (BLEND_DENOISE, 4)
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk"


def test_blend_renders_five_images_one_per_slot(builtins: dict[str, WorkflowTemplate]) -> None:
    values = BASE_VALUES | blend_values(BLEND_IMAGES, width=1024, height=1024, denoise=0.6)
    graph = builtins["blend"].render(values)

    assert [graph[f"2{k}"]["inputs"]["image"] for k in range(1, 6)] == BLEND_IMAGES
    assert [graph[f"4{k}"]["inputs"]["blend_factor"] for k in range(2, 6)] == pytest.approx(
        [1 / 2, 1 / 3, 1 / 4, 1 / 5]
    )
    assert graph["3"]["inputs"]["denoise"] == 0.6


def test_blend_is_made_of_core_comfyui_nodes_only(
    builtins: dict[str, WorkflowTemplate], object_info: dict[str, Any]
) -> None:
    modules = {object_info[n["class_type"]]["python_module"] for n in builtins["blend"].graph.values()}
    assert modules <= {"nodes", "comfy_extras.nodes_post_processing"}  # never custom_nodes.*


@pytest.mark.parametrize(
    ("images", "size", "expected"),
    [
        (["a.png"], (512, 512), "2 to 5 images, got 1"),
        ([*BLEND_IMAGES, "f.png"], (512, 512), "2 to 5 images, got 6"),
        (["a.png", ""], (512, 512), "non-empty strings"),
        (["a.png", "b.png"], (500, 512), "width must be a positive multiple of 8"),
        (["a.png", "b.png"], (512, 0), "height must be a positive multiple of 8"),
    ],
)
def test_blend_values_refuse_what_no_blend_can_be(
    images: list[str], size: tuple[int, int], expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        blend_values(images, width=size[0], height=size[1])


def test_blend_without_a_slot_filled_is_an_error(builtins: dict[str, WorkflowTemplate]) -> None:
    values = BASE_VALUES | blend_values(["a.png", "b.png"], width=512, height=512)
    del values["image_3"]
    with pytest.raises(TemplateError, match=r"no value for 'image_3' \(bound to 23.image\)"):
        builtins["blend"].render(values)


def test_operator_blend_template_must_bind_every_slot_and_factor(tmp_path: Path) -> None:
    blend = json.loads((Path(__file__).parents[1] / "comfy" / "templates" / "blend.json").read_text())
    two_slots = {"image": "Image 1.image", "image_2": "Image 2.image", "blend_factor_2": "Mix 2.blend_factor"}
    message = _load_error(tmp_path, blend, two_slots, kind="blend")
    assert (
        "a template of kind 'blend' must bind 'image_3' and 'image_4' and 'image_5' and 'blend_factor_3'"
        in message
    )


def test_model_may_point_blend_at_an_operator_template(tmp_path: Path, object_info: dict[str, Any]) -> None:
    blend = json.loads((Path(__file__).parents[1] / "comfy" / "templates" / "blend.json").read_text())
    blend["3"]["inputs"]["steps"] = 30
    bindings: dict[str, str | list[str]] = {
        **{
            name: f"Image {k}.image"
            for k, name in enumerate(["image", "image_2", "image_3", "image_4", "image_5"], 1)
        },
        **{f"blend_factor_{k}": f"Mix {k}.blend_factor" for k in range(2, 6)},
        "positive": "Positive.text",
        "seed": "Sampler.seed",
        "checkpoint": "Load Checkpoint.ckpt_name",
    }
    path = _write(tmp_path, "my_blend.json", blend)
    registry = TemplateRegistry.from_config(
        [_config(path, bindings, name="my_blend", kind="blend")], tmp_path
    )
    model = ModelProfile(name="sdxl", checkpoint="sd15.safetensors", templates={"blend": "my_blend"})

    template = registry.for_model(model, "blend")
    graph = template.render(BASE_VALUES | blend_values(BLEND_IMAGES[:3], width=512, height=512))

    assert (template.name, template.kind) == ("my_blend", "blend")
    assert _weights(graph) == pytest.approx(dict.fromkeys(BLEND_IMAGES[:3], 1 / 3))
    assert graph["3"]["inputs"]["steps"] == 30  # steps not bound: the operator's own value
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sd15.safetensors"]
    assert check_against_object_info(template, info, "sd15.safetensors") == []


# --- rendering ---------------------------------------------------------------------------------------


def test_render_returns_a_deep_copy_and_leaves_template_unchanged(
    builtins: dict[str, WorkflowTemplate],
) -> None:
    template = builtins["txt2img"]
    original = json.loads((Path(__file__).parents[1] / "comfy" / "templates" / "txt2img.json").read_text())
    first = template.render(BASE_VALUES)
    first["3"]["inputs"]["model"][0] = "999"
    first["6"]["inputs"]["text"] = "changed"
    del first["9"]
    second = template.render(BASE_VALUES)
    assert second["3"]["inputs"]["model"] == ["4", 0]
    assert second["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert json.loads(json.dumps(template.render({**BASE_VALUES}))) == second
    assert json.loads(json.dumps(WorkflowTemplate("x", "txt2img", original, {}).render({}))) == original


def test_direct_construction_checks_bindings_and_templates_are_hashable() -> None:
    graph = {"1": _node("SaveImage", "Save", filename_prefix="x", images=["1", 0])}
    template = WorkflowTemplate(
        "t", "txt2img", graph, {"filename_prefix": (Binding("1", "filename_prefix"),)}
    )
    graph["1"]["inputs"]["filename_prefix"] = "mutated after construction"
    assert template.render({"filename_prefix": "p"})["1"]["inputs"]["filename_prefix"] == "p"
    assert template.graph["1"]["inputs"]["filename_prefix"] == "x"
    assert {template: 1}[template] == 1
    with pytest.raises(TemplateError, match=r"binding 'seed' -> '1.seed': no such node input"):
        WorkflowTemplate("t", "txt2img", graph, {"seed": (Binding("1", "seed"),)})


def test_template_graph_cannot_be_mutated(builtins: dict[str, WorkflowTemplate]) -> None:
    with pytest.raises(TypeError):
        builtins["txt2img"].graph["6"]["inputs"]["text"] = "x"  # type: ignore[index]


def test_render_sets_every_bound_input(builtins: dict[str, WorkflowTemplate]) -> None:
    graph = builtins["txt2img"].render(BASE_VALUES)
    assert graph["3"]["inputs"] | {"model": None, "positive": None, "negative": None, "latent_image": None} == {
        "seed": 7, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1.0, "model": None, "positive": None, "negative": None, "latent_image": None,
    }  # fmt: skip
    assert graph["4"]["inputs"] == {"ckpt_name": "sd15.safetensors"}
    assert graph["5"]["inputs"] == {"width": 768, "height": 512, "batch_size": 4}
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["7"]["inputs"]["text"] == "people"
    assert graph["9"]["inputs"]["filename_prefix"] == "comfy-imagine/job_12"


def test_hostile_prompt_lands_as_one_literal_string(builtins: dict[str, WorkflowTemplate]) -> None:
    template = builtins["txt2img"]
    graph = template.render(BASE_VALUES | {"positive": HOSTILE, "negative": HOSTILE[::-1]})
    assert graph["6"]["inputs"]["text"] == HOSTILE
    assert graph["7"]["inputs"]["text"] == HOSTILE[::-1]
    assert set(graph) == set(template.graph)
    assert {k: v["class_type"] for k, v in graph.items()} == {
        k: v["class_type"] for k, v in template.graph.items()
    }
    others = [
        value
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
        if (node_id, name) not in {("6", "text"), ("7", "text")}
    ]
    assert not any(isinstance(value, str) and "class_type" in value for value in others)
    assert json.loads(json.dumps(graph)) == graph


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_prompt_text_round_trips_through_json(builtins: dict[str, WorkflowTemplate], text: str) -> None:
    template = builtins["img2img"]
    graph = template.render(BASE_VALUES | {"positive": text})
    assert graph["6"]["inputs"]["text"] == text
    assert json.loads(json.dumps(graph)) == graph
    assert len(graph) == len(template.graph)


def test_missing_optional_value_keeps_template_default_and_unknown_keys_are_ignored(
    builtins: dict[str, WorkflowTemplate],
) -> None:
    values = {k: BASE_VALUES[k] for k in ("positive", "seed", "checkpoint", "filename_prefix")}
    graph = builtins["txt2img"].render(values | {"tile": True, "no_such_param": object(), "steps": None})
    assert graph["3"]["inputs"]["steps"] == 20
    assert graph["5"]["inputs"]["width"] == 512
    assert graph["7"]["inputs"]["text"] == ""


@pytest.mark.parametrize("param", ["positive", "seed", "checkpoint", "filename_prefix"])
def test_missing_required_value_is_an_error_naming_it(
    builtins: dict[str, WorkflowTemplate], param: str
) -> None:
    with pytest.raises(TemplateError, match=f"no value for '{param}'"):
        builtins["txt2img"].render({k: v for k, v in BASE_VALUES.items() if k != param})


def test_image_templates_require_the_uploaded_image(builtins: dict[str, WorkflowTemplate]) -> None:
    values = {k: v for k, v in BASE_VALUES.items() if k != "image"}
    for kind in ("img2img", "upscale", "variation", "zoom", "pan"):
        with pytest.raises(TemplateError, match=r"no value for 'image' \(bound to 10.image\)"):
            builtins[kind].render(values)


@pytest.mark.parametrize(
    ("param", "value"),
    [("seed", "7"), ("seed", True), ("steps", 2.5), ("cfg", float("nan")), ("positive", 3), ("cfg", "7")],
)
def test_render_rejects_values_of_the_wrong_type(
    builtins: dict[str, WorkflowTemplate], param: str, value: object
) -> None:
    with pytest.raises(TemplateError, match=f"'{param}' must be"):
        builtins["txt2img"].render(BASE_VALUES | {param: value})


# --- operator templates: bindings and load errors ----------------------------------------------------


def test_bindings_by_node_id_and_by_title_including_a_title_with_dots(tmp_path: Path) -> None:
    path = _write(tmp_path, "my_sdxl.json", _sdxl_graph())
    bindings = SDXL_BINDINGS | {
        "checkpoint": "Load v1.5.ckpt_name",
        "filename_prefix": "Save Image.filename_prefix",
        "width": "Empty Latent Image.width",
        "steps": ["3.steps"],
    }
    template = load_template(_config(path, bindings), tmp_path)
    assert template.bindings["checkpoint"] == (Binding("4", "ckpt_name"),)
    assert template.bindings["width"] == (Binding("5", "width"),)
    assert template.source == str(tmp_path / "my_sdxl.json")
    graph = template.render(BASE_VALUES)
    assert graph["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert graph["3"]["inputs"]["seed"] == 7
    assert graph["3"]["inputs"]["steps"] == 25
    assert graph["5"]["inputs"] == {"width": 768, "height": 1024, "batch_size": 4}
    assert graph["9"]["inputs"]["filename_prefix"] == "comfy-imagine/job_12"


def test_one_parameter_bound_to_several_inputs_sets_all_of_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.json", _sdxl_graph())
    bindings = SDXL_BINDINGS | {"positive": ["6.text", "7.text"]}
    del bindings["negative"]
    graph = load_template(_config(path, bindings), tmp_path).render(BASE_VALUES)
    assert graph["6"]["inputs"]["text"] == graph["7"]["inputs"]["text"] == "a lighthouse at dusk"


def test_absolute_template_path_ignores_base_dir(tmp_path: Path) -> None:
    _write(tmp_path, "abs.json", _sdxl_graph())
    template = load_template(_config(str(tmp_path / "abs.json"), SDXL_BINDINGS), Path("/nonexistent"))
    assert template.name == "my_sdxl"


def _load_error(tmp_path: Path, content: object, bindings: dict[str, Any] | None = None, **extra: Any) -> str:
    path = _write(tmp_path, "my_sdxl.json", content) if content is not None else "my_sdxl.json"
    cfg = _config(path, SDXL_BINDINGS if bindings is None else bindings, **extra)
    with pytest.raises(TemplateError) as info:
        TemplateRegistry.from_config([cfg], tmp_path)
    return str(info.value)


def test_binding_to_missing_node_names_file_and_binding(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), SDXL_BINDINGS | {"seed": "Sampler 2.seed"})
    assert message == (
        "templates[0] (my_sdxl.json): binding 'seed' -> 'Sampler 2.seed': no node with id or title 'Sampler 2'"
    )


def test_binding_to_missing_input_lists_the_inputs_the_node_has(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), SDXL_BINDINGS | {"seed": "Sampler.noise_seed"})
    assert message.startswith("templates[0] (my_sdxl.json): binding 'seed' -> 'Sampler.noise_seed': ")
    assert "node 3 ('Sampler', KSampler) has no input 'noise_seed'; it has: seed, steps, cfg" in message


def test_ambiguous_title_is_rejected_and_node_id_suggested(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), SDXL_BINDINGS | {"positive": "Prompt.text"})
    assert message.startswith("templates[0] (my_sdxl.json): binding 'positive' -> 'Prompt.text': ")
    assert "title 'Prompt' is used by nodes 6, 7" in message
    assert "use the node id" in message


def test_ui_format_export_is_explained(tmp_path: Path) -> None:
    ui = {"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}
    message = _load_error(tmp_path, ui)
    assert message.startswith("templates[0] (my_sdxl.json): this is the UI format")
    assert "use Export (API)" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"3": {"class_type": "KSampler",', "not valid JSON (line 1, column"),
        ("", "not valid JSON"),
        ([1, 2], "expected a JSON object of nodes"),
        ({}, "the workflow has no nodes"),
        ({"3": {"class_type": "KSampler"}}, "node '3' is not an API-format node"),
        ({"3": {"inputs": {}, "class_type": ""}}, "node '3' is not an API-format node"),
        ({"3": {"class_type": "X", "inputs": {"a": ["99", 0]}}}, "links to node '99', which is not"),
    ],
)
def test_malformed_files_are_rejected_with_the_reason(tmp_path: Path, content: object, expected: str) -> None:
    message = _load_error(tmp_path, content)
    assert message.startswith("templates[0] (my_sdxl.json): ")
    assert expected in message


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "my_sdxl.json").write_bytes(b'{"3": "\xff\xfe"}')
    assert "not UTF-8 text" in _load_error(tmp_path, None)


def test_utf8_bom_from_windows_editors_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(_sdxl_graph()).encode())
    assert load_template(_config("bom.json", SDXL_BINDINGS), tmp_path).kind == "txt2img"


def test_missing_file_names_the_resolved_path(tmp_path: Path) -> None:
    message = _load_error(tmp_path, None)
    assert message == f"templates[0] (my_sdxl.json): file not found: {tmp_path / 'my_sdxl.json'}"


@pytest.mark.parametrize(
    ("bindings", "expected"),
    [
        (SDXL_BINDINGS | {"prompt": "6.text"}, "binding 'prompt': unknown parameter; allowed: positive,"),
        (SDXL_BINDINGS | {"negative": []}, "binding 'negative': empty list"),
        (SDXL_BINDINGS | {"steps": "steps"}, "binding 'steps' -> 'steps': write it as 'NODE.input'"),
        (SDXL_BINDINGS | {"steps": "3.seed"}, "that input is already bound to 'seed'"),
        (SDXL_BINDINGS | {"cfg": "Sampler.model"}, "input 'model' of node 3 is a link from node 4"),
        ({"negative": "7.text", "seed": "3.seed"}, "a template of kind 'txt2img' must bind 'positive'"),
        (SDXL_BINDINGS | {"tile": "3.denoise"}, "binds 'tile' but supports_tile is false"),
    ],
)
def test_bad_bindings_are_rejected_with_the_reason(
    tmp_path: Path, bindings: dict[str, Any], expected: str
) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), bindings)
    assert message.startswith("templates[0] (my_sdxl.json): ")
    assert expected in message


def test_supports_tile_requires_a_tile_binding(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), supports_tile=True)
    assert "supports_tile is true but no binding for 'tile'" in message


def test_image_kinds_must_bind_the_image(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _sdxl_graph(), kind="upscale")
    assert "a template of kind 'upscale' must bind 'image'" in message


def test_template_without_an_output_node_is_rejected(tmp_path: Path) -> None:
    graph = _sdxl_graph()
    del graph["9"]
    assert "no output node" in _load_error(tmp_path, graph)


def test_custom_save_node_counts_as_output_when_filename_prefix_is_bound(tmp_path: Path) -> None:
    graph = _sdxl_graph()
    graph["9"]["class_type"] = "Image Save"
    path = _write(tmp_path, "t.json", graph)
    template = load_template(
        _config(path, SDXL_BINDINGS | {"filename_prefix": "9.filename_prefix"}), tmp_path
    )
    assert template.output_node_ids() == ["9"]


def test_error_names_the_index_of_the_failing_template(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", _sdxl_graph())
    bad = _write(tmp_path, "bad.json", {"nodes": [], "links": []})
    configs = [_config(good, SDXL_BINDINGS), _config(bad, SDXL_BINDINGS, name="other")]
    with pytest.raises(TemplateError, match=r"^templates\[1\] \(bad.json\): this is the UI format"):
        TemplateRegistry.from_config(configs, tmp_path)


def test_custom_names_must_not_clash_with_builtins_or_each_other(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.json", _sdxl_graph())
    with pytest.raises(TemplateError, match="'txt2img' is the name of a built-in template"):
        TemplateRegistry.from_config([_config(path, SDXL_BINDINGS, name="txt2img")], tmp_path)
    twice = [_config(path, SDXL_BINDINGS), _config(path, SDXL_BINDINGS)]
    with pytest.raises(
        TemplateError, match=r"templates\[1\] \(t.json\): name 'my_sdxl' is used by an earlier"
    ):
        TemplateRegistry.from_config(twice, tmp_path)


# --- registry ----------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> TemplateRegistry:
    sdxl = _write(tmp_path, "sdxl.json", _sdxl_graph())
    tiled = _write(tmp_path, "tiled.json", _sdxl_graph())
    return TemplateRegistry.from_config(
        [
            _config(sdxl, SDXL_BINDINGS),
            _config(tiled, SDXL_BINDINGS | {"tile": "9.filename_prefix"}, name="tiled", supports_tile=True),
        ],
        tmp_path,
    )


def test_model_without_overrides_gets_builtins(registry: TemplateRegistry) -> None:
    model = ModelProfile(name="sd15", checkpoint="sd15.safetensors")
    for kind in TEMPLATE_KINDS:
        template = registry.for_model(model, kind)
        assert (template.name, template.source) == (kind, "<built-in>")
    assert not registry.supports_tile(model)


def test_model_override_picks_custom_template_only_for_that_kind(registry: TemplateRegistry) -> None:
    model = ModelProfile(name="sdxl", checkpoint="sdxl.safetensors", templates={"txt2img": "tiled"})
    assert registry.for_model(model, "txt2img").name == "tiled"
    assert registry.for_model(model, "upscale").name == "upscale"
    assert registry.supports_tile(model)
    assert set(registry.templates) == {*TEMPLATE_KINDS, "my_sdxl", "tiled"}


def test_model_may_name_a_builtin_template(registry: TemplateRegistry) -> None:
    model = ModelProfile(name="m", checkpoint="c", templates={"txt2img": "txt2img"})
    assert registry.for_model(model, "txt2img").source == "<built-in>"


def test_unknown_template_name_lists_known_ones(registry: TemplateRegistry) -> None:
    model = ModelProfile(name="sdxl", checkpoint="c", templates={"txt2img": "my_sdx"})
    with pytest.raises(TemplateError, match=r"model 'sdxl': templates.txt2img = 'my_sdx' is not a known"):
        registry.for_model(model, "txt2img")
    with pytest.raises(TemplateError, match="my_sdx"):
        registry.validate_models([ModelProfile(name="ok", checkpoint="c"), model])


def test_template_of_another_kind_is_refused(registry: TemplateRegistry) -> None:
    model = ModelProfile(name="sdxl", checkpoint="c", templates={"variation": "my_sdxl"})
    with pytest.raises(TemplateError, match="'my_sdxl' is a template of kind 'txt2img', not 'variation'"):
        registry.for_model(model, "variation")


def test_unknown_kind_is_refused(registry: TemplateRegistry) -> None:
    with pytest.raises(TemplateError, match="unknown template kind 'inpaint'"):
        registry.for_model(ModelProfile(name="m", checkpoint="c"), "inpaint")


# --- outpaint geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "action", "pads", "out"),
    [
        ((512, 512), "zoom_1.5", (128, 128, 128, 128), (512, 512)),
        ((512, 512), "zoom_2", (256, 256, 256, 256), (512, 512)),
        ((832, 1216), "zoom_1.5", (208, 208, 304, 304), (832, 1216)),
        ((768, 512), "zoom_2", (384, 384, 256, 256), (768, 512)),
        ((512, 512), "pan_left", (256, 0, 0, 0), (768, 512)),
        ((512, 768), "pan_right", (0, 256, 0, 0), (768, 768)),
        ((512, 768), "pan_up", (0, 0, 384, 0), (512, 1152)),
        ((1024, 576), "pan_down", (0, 0, 0, 288), (1024, 864)),
        ((500, 300), "zoom_1.5", (128, 128, 72, 72), (504, 304)),
    ],
)
def test_outpaint_padding(
    size: tuple[int, int], action: str, pads: tuple[int, ...], out: tuple[int, int]
) -> None:
    result = outpaint_padding(*size, action)
    assert (result["pad_left"], result["pad_right"], result["pad_top"], result["pad_bottom"]) == pads
    assert (result["width"], result["height"]) == out


@pytest.mark.parametrize("action", OUTPAINT_ACTIONS)
@pytest.mark.parametrize("size", [(64, 64), (512, 512), (832, 1216), (1000, 712), (2048, 512)])
def test_outpaint_values_are_multiples_of_8_and_feathering_is_modest(
    size: tuple[int, int], action: str
) -> None:
    result = outpaint_padding(*size, action)
    assert all(value % 8 == 0 for value in result.values())
    assert 8 <= result["feathering"] <= min(size) // 4 + 8
    assert result["feathering"] == (40 if size == (512, 512) else result["feathering"])
    if action.startswith("zoom_"):
        factor = 1.5 if action == "zoom_1.5" else 2.0
        assert abs(size[0] + result["pad_left"] + result["pad_right"] - size[0] * factor) <= 8
        assert abs(size[1] + result["pad_top"] + result["pad_bottom"] - size[1] * factor) <= 8
    else:
        assert sum(bool(result[k]) for k in ("pad_left", "pad_right", "pad_top", "pad_bottom")) == 1


@pytest.mark.parametrize(
    ("width", "height", "action"), [(512, 512, "zoom_3"), (0, 512, "pan_left"), (True, 8, "zoom_2")]
)
def test_outpaint_padding_rejects_bad_input(width: int, height: int, action: str) -> None:
    with pytest.raises(ValueError, match=r"allowed|must be an int"):
        outpaint_padding(width, height, action)


def test_a_zoom_factor_overrides_a_zoom_actions_own() -> None:
    result = outpaint_padding(512, 256, "zoom_custom", zoom=1.5)
    assert (result["pad_left"], result["pad_right"], result["pad_top"], result["pad_bottom"]) == (
        128,
        128,
        64,
        64,
    )
    assert (result["width"], result["height"]) == (512, 256)
    assert outpaint_padding(512, 512, "zoom_custom", zoom=1.0)["pad_left"] == 8  # the smallest pad
    with pytest.raises(ValueError, match="only zoom actions"):
        outpaint_padding(512, 512, "pan_left", zoom=1.5)
    with pytest.raises(ValueError, match="from 1 to"):
        outpaint_padding(512, 512, "zoom_custom", zoom=0.5)


# --- check against /object_info ----------------------------------------------------------------------


def test_check_reports_missing_checkpoint_with_what_the_backend_has(
    builtins: dict[str, WorkflowTemplate], object_info: dict[str, Any]
) -> None:
    problems = check_against_object_info(builtins["txt2img"], object_info, "sd15.safetensors")
    assert problems == [
        "template 'txt2img': checkpoint 'sd15.safetensors' is not on this ComfyUI; it has: none"
    ]
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [f"m{i}.ckpt" for i in range(12)]
    (problem,) = check_against_object_info(builtins["txt2img"], info, "sd15.safetensors")
    assert problem.endswith("it has: m0.ckpt, m1.ckpt, m2.ckpt, m3.ckpt, m4.ckpt, m5.ckpt, m6.ckpt, "
                            "m7.ckpt, m8.ckpt, m9.ckpt and 2 more")  # fmt: skip
    assert check_against_object_info(builtins["txt2img"], info, None) == []


def test_check_reports_missing_node_class(tmp_path: Path, object_info: dict[str, Any]) -> None:
    graph = _sdxl_graph()
    graph["10"] = {
        "class_type": "UltimateSDUpscale",
        "inputs": {"image": ["8", 0]},
        "_meta": {"title": "USDU"},
    }
    bindings = SDXL_BINDINGS | {"checkpoint": "4.ckpt_name"}
    template = load_template(_config(_write(tmp_path, "t.json", graph), bindings), tmp_path)
    assert check_against_object_info(template, object_info, None) == [
        "template 'my_sdxl': node 10 ('USDU', UltimateSDUpscale): node class 'UltimateSDUpscale' does not "
        "exist on this ComfyUI (a custom node that is not installed?)"
    ]


def test_check_reports_bound_input_missing_on_backend_and_stale_exports(
    tmp_path: Path, object_info: dict[str, Any]
) -> None:
    graph = _sdxl_graph()
    graph["3"]["inputs"]["noise_seed"] = graph["3"]["inputs"].pop("seed")
    graph["5"]["inputs"]["batch_size"] = 0
    graph["3"]["inputs"]["latent_image"] = ["6", 0]
    graph["8"]["inputs"]["vae"] = ["4", 5]
    graph["3"]["inputs"]["scheduler"] = "warp"
    bindings = SDXL_BINDINGS | {"seed": "3.noise_seed"}
    template = load_template(_config(_write(tmp_path, "t.json", graph), bindings), tmp_path)
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sdxl.safetensors"]
    problems = check_against_object_info(template, info, None)
    prefix = "template 'my_sdxl': node"
    assert problems == [
        f"{prefix} 3 ('Sampler', KSampler): required input 'seed' is missing; re-export the workflow from "
        "this ComfyUI",
        f"{prefix} 3 ('Sampler', KSampler): input 'scheduler': 'warp' is not one of this ComfyUI's choices "
        "(simple, sgm_uniform, karras, exponential, ddim_uniform, beta, normal, linear_quadratic, kl_optimal)",
        f"{prefix} 3 ('Sampler', KSampler): input 'latent_image': expects LATENT but node 6 (CLIPTextEncode) "
        "gives CONDITIONING",
        f"{prefix} 3 ('Sampler', KSampler): input 'noise_seed' (bound to 'seed') does not exist on KSampler; "
        "it has: model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise",
        f"{prefix} 5 ('Empty Latent Image', EmptyLatentImage): input 'batch_size': 0 is below the minimum 1",
        f"{prefix} 8 (VAEDecode): input 'vae': links to output 5 of node 4, but CheckpointLoaderSimple has 3",
    ]


def test_check_reports_a_model_file_hardcoded_in_the_template(
    tmp_path: Path, object_info: dict[str, Any]
) -> None:
    template = load_template(_config(_write(tmp_path, "t.json", _sdxl_graph()), SDXL_BINDINGS), tmp_path)
    assert check_against_object_info(template, object_info, "ignored.safetensors") == [
        "template 'my_sdxl': node 4 ('Load v1.5', CheckpointLoaderSimple): input 'ckpt_name': "
        "'sdxl.safetensors' is not one of this ComfyUI's choices (none)"
    ]


def test_samplers_and_schedulers_from_real_object_info(object_info: dict[str, Any]) -> None:
    samplers, schedulers = samplers_and_schedulers(object_info)
    assert samplers[:3] == ["euler", "euler_cfg_pp", "euler_ancestral"]
    assert "dpmpp_2m" in samplers
    assert schedulers == ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                          "linear_quadratic", "kl_optimal"]  # fmt: skip


def test_samplers_and_schedulers_understand_the_newer_combo_spec() -> None:
    info = {"KSampler": {"input": {"required": {
        "sampler_name": ["COMBO", {"options": ["euler", "lcm"]}],
        "scheduler": ["COMBO", {"multiselect": False, "options": ["normal"]}],
    }}}}  # fmt: skip
    assert samplers_and_schedulers(info) == (["euler", "lcm"], ["normal"])


def test_samplers_and_schedulers_refuse_object_info_without_ksampler() -> None:
    with pytest.raises(TemplateError, match="does not list KSampler"):
        samplers_and_schedulers({"SaveImage": {}})


def test_input_choices_reads_both_combo_spellings_and_unknowns_are_none() -> None:
    from comfy.object_info import input_choices

    old_style = {"Loader": {"input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {}]}}}}
    new_style = {"Loader": {"input": {"optional": {"ckpt_name": ["COMBO", {"options": ["c.safetensors"]}]}}}}
    assert input_choices(old_style, "Loader", "ckpt_name") == ["a.safetensors", "b.safetensors"]
    assert input_choices(new_style, "Loader", "ckpt_name") == ["c.safetensors"]
    assert input_choices(old_style, "Missing", "ckpt_name") is None
    assert (
        input_choices({"Loader": {"input": {"required": {"steps": ["INT", {}]}}}}, "Loader", "steps") is None
    )
