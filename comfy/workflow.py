"""Workflow templates: ComfyUI API-format graphs whose node inputs are bound to named job parameters.

A template is the JSON that ComfyUI's "Export (API)" writes, `{node_id: {"class_type", "inputs",
"_meta": {"title"}}}`, plus bindings `parameter -> "NODE.input"` (NODE is a node id or a unique
`_meta.title`; a parameter may bind several inputs). Rendering deep-copies the parsed graph and assigns
values to inputs, so a prompt is always one literal string and can never change the graph's shape.

Missing values: a bound parameter that is absent from `values` (or None) keeps the value the template's
JSON holds at that input (the template's default), except the parameters in `REQUIRED_PARAMETERS`
(positive, seed, checkpoint, image, filename_prefix, and a blend's other images and blend factors): a job
without them would silently repeat a seed, overwrite files, use the wrong model or mix the wrong pictures,
so rendering fails instead. Values the template does not bind are ignored. Bindings may only point at
inputs holding a value (never at a link between nodes).

Blend (`/blend`, 2 to 5 images): a blend template has five image slots, `image` and `image_2`..`image_5`,
and mixes slot k into the mix of slots 1..k-1 with `blend_factor_k` (k = 2..5), the share of image k in
the mix of images 1..k. `blend_values()` fills every slot for any count: unused slots repeat the first
image with factor 0, so they add nothing, and the graph keeps one shape (no nodes to prune or rewire).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from comfy.actions import OUTPAINT_ACTIONS as OUTPAINT
from comfy.profiles import TEMPLATE_KINDS, ModelProfile, TemplateConfig

log = logging.getLogger(__name__)

# A blend mixes 2 to 5 images; a blend template has a slot for each of the 5 (see the module docstring).
BLEND_SLOTS = 5
BLEND_MIN_IMAGES = 2
BLEND_DENOISE = 0.7  # how far the sampler may move from the mixed picture: enough to make one image of it
_BLEND_IMAGES = ("image", *(f"image_{slot}" for slot in range(2, BLEND_SLOTS + 1)))
_BLEND_FACTORS = tuple(f"blend_factor_{slot}" for slot in range(2, BLEND_SLOTS + 1))

_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_BOOL = (bool,)

# Every parameter a binding may name, with the Python types its value may have.
PARAMETERS: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "positive": _STR,
        "negative": _STR,
        "seed": _INT,
        "steps": _INT,
        "cfg": _NUM,
        "sampler": _STR,
        "scheduler": _STR,
        "width": _INT,
        "height": _INT,
        "batch_size": _INT,
        "checkpoint": _STR,
        "denoise": _NUM,
        "image": _STR,
        "scale_by": _NUM,
        "pad_left": _INT,
        "pad_right": _INT,
        "pad_top": _INT,
        "pad_bottom": _INT,
        "feathering": _INT,
        "filename_prefix": _STR,
        "tile": _BOOL,
        **dict.fromkeys(_BLEND_IMAGES[1:], _STR),
        **dict.fromkeys(_BLEND_FACTORS, _NUM),
    }
)

# Bound parameters that must be given at render time (see the module docstring).
REQUIRED_PARAMETERS = frozenset(
    {"positive", "seed", "checkpoint", "filename_prefix", *_BLEND_IMAGES, *_BLEND_FACTORS}
)

# What a template of each kind must bind to be usable by the bot.
_KIND_NEEDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        **dict.fromkeys(TEMPLATE_KINDS, ("image",)),
        "txt2img": ("positive", "seed"),
        "blend": (*_BLEND_IMAGES, *_BLEND_FACTORS),
    }
)

OUTPUT_CLASSES = frozenset(
    {"SaveImage", "PreviewImage", "SaveImageWebsocket", "SaveAnimatedWEBP", "SaveAnimatedPNG"}
)
SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})

# The zoom and pan actions of comfy.actions, by name.
OUTPAINT_ACTIONS = tuple(action.name for action in OUTPAINT)
_ZOOM_FACTORS: Mapping[str, float] = MappingProxyType(
    {action.name: action.zoom for action in OUTPAINT if action.zoom is not None}
)
_MAX_ZOOM = 4.0  # past this the old picture is a speck; the parser allows less (`--zoom` 1 to 2)
_PAN_SIDES: Mapping[str, str] = MappingProxyType(
    {action.name: f"pad_{action.pan_side}" for action in OUTPAINT if action.pan_side is not None}
)

_COMMON_BINDINGS: Mapping[str, str] = MappingProxyType(
    {
        "positive": "Positive.text",
        "negative": "Negative.text",
        "seed": "Sampler.seed",
        "steps": "Sampler.steps",
        "cfg": "Sampler.cfg",
        "sampler": "Sampler.sampler_name",
        "scheduler": "Sampler.scheduler",
        "checkpoint": "Load Checkpoint.ckpt_name",
        "filename_prefix": "Save.filename_prefix",
    }
)
_IMAGE_TO_BATCH_BINDINGS: Mapping[str, str] = MappingProxyType(
    {
        "image": "Source Image.image",
        "width": "Resize.width",
        "height": "Resize.height",
        "batch_size": "Batch.amount",
        "denoise": "Sampler.denoise",
    }
)
_OUTPAINT_BINDINGS: Mapping[str, str | list[str]] = MappingProxyType(
    {
        "image": "Source Image.image",
        "pad_left": "Outpaint Pad.left",
        "pad_right": "Outpaint Pad.right",
        "pad_top": "Outpaint Pad.top",
        "pad_bottom": "Outpaint Pad.bottom",
        "feathering": "Outpaint Pad.feathering",
        "width": ["Resize Image.width", "Resize Mask.width"],
        "height": ["Resize Image.height", "Resize Mask.height"],
        "batch_size": "Batch.amount",
    }
)
# The built-in templates live in comfy/templates/<kind>.json; these are their bindings.
_BUILTIN_BINDINGS: Mapping[str, Mapping[str, str | list[str]]] = MappingProxyType(
    {
        "txt2img": {
            **_COMMON_BINDINGS,
            "width": "Latent.width",
            "height": "Latent.height",
            "batch_size": "Latent.batch_size",
        },
        "img2img": {**_COMMON_BINDINGS, **_IMAGE_TO_BATCH_BINDINGS},
        "variation": {**_COMMON_BINDINGS, **_IMAGE_TO_BATCH_BINDINGS},
        "upscale": {
            **_COMMON_BINDINGS,
            "image": "Source Image.image",
            "scale_by": "Upscale.scale_by",
            "denoise": "Sampler.denoise",
        },
        "zoom": {**_COMMON_BINDINGS, **_OUTPAINT_BINDINGS},
        "pan": {**_COMMON_BINDINGS, **_OUTPAINT_BINDINGS},
        # LoadImage "Image k" -> ImageScale "Resize k" -> ImageBlend "Mix k" (k >= 2, chained from "Resize 1")
        # -> one VAEEncode -> RepeatLatentBatch -> KSampler at denoise < 1: the mixed picture, redrawn 4 ways.
        "blend": {
            **_COMMON_BINDINGS,
            **{name: f"Image {slot}.image" for slot, name in enumerate(_BLEND_IMAGES, start=1)},
            **{name: f"Mix {slot}.blend_factor" for slot, name in enumerate(_BLEND_FACTORS, start=2)},
            "width": [f"Resize {slot}.width" for slot in range(1, BLEND_SLOTS + 1)],
            "height": [f"Resize {slot}.height" for slot in range(1, BLEND_SLOTS + 1)],
            "batch_size": "Batch.amount",
            "denoise": "Sampler.denoise",
        },
    }
)


class TemplateError(ValueError):
    """A workflow template that cannot be loaded, used or rendered; the message says what and where."""


@dataclass(frozen=True)
class Binding:
    """One node input that a parameter's value is written to."""

    node_id: str
    input: str

    def __str__(self) -> str:
        return f"{self.node_id}.{self.input}"


@dataclass(frozen=True)
class WorkflowTemplate:
    """A parsed API-format graph plus its parameter bindings; read-only, render() returns new graphs."""

    name: str
    kind: str
    graph: Mapping[str, Any] = field(hash=False)
    bindings: Mapping[str, tuple[Binding, ...]] = field(hash=False)
    supports_tile: bool = False
    source: str = "<built-in>"

    def __post_init__(self) -> None:
        graph = _freeze(self.graph)
        bindings = MappingProxyType({param: tuple(targets) for param, targets in self.bindings.items()})
        for param, targets in bindings.items():
            for target in targets:
                node = graph.get(target.node_id)
                if not isinstance(node, Mapping) or target.input not in node.get("inputs", {}):
                    raise TemplateError(
                        f"template {self.name!r}: binding {param!r} -> {str(target)!r}: no such node input"
                    )
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "bindings", bindings)

    def render(self, values: Mapping[str, object]) -> dict[str, Any]:
        """Return a new API-format graph with every bound input set from `values`.

        Keys the template does not bind are ignored. A bound parameter missing from `values` (or None)
        keeps the template's own value, unless it is in `REQUIRED_PARAMETERS`: then TemplateError.
        Values are type-checked (e.g. seed must be an int, positive a str) and never parsed.
        """
        graph = _thaw(self.graph)
        for param, targets in self.bindings.items():
            value = values.get(param)
            if value is None:
                if param in REQUIRED_PARAMETERS:
                    where = ", ".join(str(target) for target in targets)
                    raise TemplateError(f"template {self.name!r}: no value for {param!r} (bound to {where})")
                continue
            _check_value(self.name, param, value)
            for target in targets:
                graph[target.node_id]["inputs"][target.input] = value
        return graph

    def output_node_ids(self) -> list[str]:
        """Ids of the nodes whose images are the result: image save/preview nodes and the filename_prefix node."""
        prefix_nodes = {target.node_id for target in self.bindings.get("filename_prefix", ())}
        return [
            node_id
            for node_id, node in self.graph.items()
            if node["class_type"] in OUTPUT_CLASSES or node_id in prefix_nodes
        ]

    def sampler_node_ids(self) -> list[str]:
        """Ids of the sampling nodes, in graph order (a hires-fix graph has two), for overall progress."""
        return [
            node_id
            for node_id, node in self.graph.items()
            if node["class_type"] in SAMPLER_CLASSES or "KSampler" in node["class_type"]
        ]


def load_builtin_templates() -> dict[str, WorkflowTemplate]:
    """Load the built-in templates shipped in `comfy/templates/`, keyed by kind (== name)."""
    folder = resources.files("comfy").joinpath("templates")
    templates: dict[str, WorkflowTemplate] = {}
    for kind in TEMPLATE_KINDS:
        filename = f"{kind}.json"
        raw = folder.joinpath(filename).read_bytes()
        templates[kind] = _parse_template(
            name=kind,
            kind=kind,
            raw=raw,
            bindings=_BUILTIN_BINDINGS[kind],
            supports_tile=False,
            source="<built-in>",
            where=f"built-in template {filename}",
        )
    return templates


def load_template(cfg: TemplateConfig, base_dir: Path, *, index: int | None = None) -> WorkflowTemplate:
    """Load and validate an operator's template; `cfg.path` is relative to `base_dir` unless absolute.

    `index` is the template's position in the config, used in error messages (`templates[0] (x.json): ...`).
    Raises TemplateError naming the file and the problem: missing file, not JSON, UI format instead of API
    format, a binding to a node or input that does not exist, an ambiguous title, ...
    """
    where = f"templates[{index}] ({cfg.path})" if index is not None else f"template {cfg.name!r} ({cfg.path})"
    path = Path(cfg.path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TemplateError(f"{where}: file not found: {path}") from None
    except OSError as exc:
        raise TemplateError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    template = _parse_template(
        name=cfg.name,
        kind=cfg.kind,
        raw=raw,
        bindings=cfg.bindings,
        supports_tile=cfg.supports_tile,
        source=str(path),
        where=where,
    )
    log.info("loaded %s template %r from %s", template.kind, template.name, path)
    return template


class TemplateRegistry:
    """The built-in and the operator's templates, and which one serves each model and kind of job."""

    def __init__(
        self,
        builtins: Mapping[str, WorkflowTemplate],
        custom: Mapping[str, WorkflowTemplate] = MappingProxyType({}),
    ) -> None:
        clash = sorted(set(builtins) & set(custom))
        if clash:
            raise TemplateError(
                f"template name(s) {clash} are taken by built-in templates; choose other names"
            )
        self._builtins = dict(builtins)
        self._custom = dict(custom)
        self._all: Mapping[str, WorkflowTemplate] = MappingProxyType({**self._builtins, **self._custom})

    @classmethod
    def from_config(cls, templates: Sequence[TemplateConfig], base_dir: Path) -> TemplateRegistry:
        """Load the built-ins plus every `[[templates]]` entry; the first problem raises TemplateError."""
        builtins = load_builtin_templates()
        custom: dict[str, WorkflowTemplate] = {}
        for index, cfg in enumerate(templates):
            where = f"templates[{index}] ({cfg.path})"
            if cfg.name in builtins:
                raise TemplateError(
                    f"{where}: name {cfg.name!r} is the name of a built-in template; choose another name"
                )
            if cfg.name in custom:
                raise TemplateError(f"{where}: name {cfg.name!r} is used by an earlier template")
            custom[cfg.name] = load_template(cfg, base_dir, index=index)
        return cls(builtins, custom)

    @property
    def templates(self) -> Mapping[str, WorkflowTemplate]:
        """Every template by name, built-in and custom (read-only)."""
        return self._all

    def for_model(self, model: ModelProfile, kind: str) -> WorkflowTemplate:
        """The template serving `kind` jobs for `model`: its `templates[kind]` if set, else the built-in."""
        if kind not in TEMPLATE_KINDS:
            raise TemplateError(f"unknown template kind {kind!r}; allowed: {', '.join(TEMPLATE_KINDS)}")
        name = model.templates.get(kind)
        if name is None:
            template = self._builtins.get(kind)
            if template is None:
                raise TemplateError(f"no built-in template for {kind!r} and model {model.name!r} sets none")
            return template
        template = self._all.get(name)
        if template is None:
            raise TemplateError(
                f"model {model.name!r}: templates.{kind} = {name!r} is not a known template; "
                f"known: {', '.join(sorted(self._all))}"
            )
        if template.kind != kind:
            raise TemplateError(
                f"model {model.name!r}: templates.{kind} = {name!r} is a template of kind "
                f"{template.kind!r}, not {kind!r}"
            )
        return template

    def supports_tile(self, model: ModelProfile) -> bool:
        """Whether `--tile` works for `model`: its txt2img template binds the `tile` parameter."""
        return self.for_model(model, "txt2img").supports_tile

    def validate_models(self, models: Sequence[ModelProfile]) -> None:
        """Raise TemplateError listing every model whose template choices are wrong (for startup)."""
        problems: list[str] = []
        for model in models:
            for kind in model.templates:
                try:
                    self.for_model(model, kind)
                except TemplateError as exc:
                    problems.append(str(exc))
        if problems:
            raise TemplateError("; ".join(problems))


def check_against_object_info(
    template: WorkflowTemplate, object_info: Mapping[str, Any], checkpoint: str | None
) -> list[str]:
    """Compare a template with a backend's `/object_info`; return human-readable problems (empty = ok).

    Checks: every node class exists; every required input is present and every bound input exists;
    links connect matching types; unbound literal values are in range / among the combo choices; and
    `checkpoint` (if given) is among the choices of the input the `checkpoint` parameter is bound to
    (e.g. `CheckpointLoaderSimple.ckpt_name`). A template that does not bind `checkpoint` is not
    checked for it.
    """
    label = f"template {template.name!r}"
    bound = {
        (target.node_id, target.input): param
        for param, targets in template.bindings.items()
        for target in targets
    }
    problems: list[str] = []
    for node_id, node in template.graph.items():
        class_type = node["class_type"]
        where = f"{label}: node {node_id} ({_describe(node)})"
        info = object_info.get(class_type)
        if not isinstance(info, Mapping):
            problems.append(
                f"{where}: node class {class_type!r} does not exist on this ComfyUI "
                "(a custom node that is not installed?)"
            )
            continue
        specs = _input_specs(info)
        required = _section(info, "required")
        for name in required:
            if name not in node["inputs"]:
                problems.append(
                    f"{where}: required input {name!r} is missing; re-export the workflow from this ComfyUI"
                )
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            if spec is None:
                if (node_id, name) in bound:
                    problems.append(
                        f"{where}: input {name!r} (bound to {bound[node_id, name]!r}) does not exist on "
                        f"{class_type}; it has: {', '.join(specs) or 'no inputs'}"
                    )
                continue
            if _is_link(value):
                problem = _check_link(template.graph, object_info, value, spec)
            elif (node_id, name) in bound:
                problem = None
            else:
                problem = _check_literal(value, spec)
            if problem:
                problems.append(f"{where}: input {name!r}: {problem}")
    if checkpoint is not None:
        for target in template.bindings.get("checkpoint", ()):
            info = object_info.get(template.graph[target.node_id]["class_type"])
            spec = _input_specs(info).get(target.input) if isinstance(info, Mapping) else None
            options = _combo_options(spec)
            if options is not None and checkpoint not in options:
                have = _preview(options) if options else "none"
                problem = f"{label}: checkpoint {checkpoint!r} is not on this ComfyUI; it has: {have}"
                if problem not in problems:
                    problems.append(problem)
    return problems


def samplers_and_schedulers(object_info: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The sampler and scheduler names a backend accepts, read from KSampler's input spec.

    Raises TemplateError when `/object_info` does not describe them (not a ComfyUI, or a broken one).
    """
    info = object_info.get("KSampler")
    required = _section(info, "required") if isinstance(info, Mapping) else {}
    samplers = _combo_options(required.get("sampler_name"))
    schedulers = _combo_options(required.get("scheduler"))
    if samplers is None or schedulers is None:
        raise TemplateError("/object_info does not list KSampler's sampler_name and scheduler choices")
    return list(samplers), list(schedulers)


def outpaint_padding(width: int, height: int, action: str, *, zoom: float | None = None) -> dict[str, int]:
    """Values for the zoom/pan templates from the source image's size and the action (comfy.actions).

    `zoom` overrides a zoom action's own factor (Custom Zoom's `--zoom`); it must be at least 1.

    Returns pad_left, pad_right, pad_top, pad_bottom, feathering, width and height, all multiples of 8
    (rounded to the nearest, at least 8 where not 0):
    - a zoom: pad every side by (factor - 1) / 2 of that side's length, so the canvas is factor times
      larger; width/height (the output size) stay the source's size, so the old picture shrinks to
      1/factor in the middle of a new one.
    - a pan: pad its side by half the width (left, right) or half the height (top, bottom).
      width/height grow by the padding (the canvas extends; callers cap it if they must).
    - feathering (the soft blend into the old picture) is about min(width, height) / 12: 40 at 512.
    """
    if action not in OUTPAINT_ACTIONS:
        raise ValueError(f"unknown outpaint action {action!r}; allowed: {', '.join(OUTPAINT_ACTIONS)}")
    for label, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"{label} must be an int of at least 8, got {size!r}")
    pads = {"pad_left": 0, "pad_right": 0, "pad_top": 0, "pad_bottom": 0}
    factor = _ZOOM_FACTORS.get(action)
    if zoom is not None:
        if factor is None:
            raise ValueError(f"{action!r} is no zoom; only zoom actions take a zoom factor")
        if isinstance(zoom, bool) or not isinstance(zoom, int | float) or not 1.0 <= zoom <= _MAX_ZOOM:
            raise ValueError(f"zoom must be a number from 1 to {_MAX_ZOOM:g}, got {zoom!r}")
        factor = float(zoom)
    if factor is not None:
        side_x = _round8(width * (factor - 1) / 2)
        side_y = _round8(height * (factor - 1) / 2)
        pads.update(pad_left=side_x, pad_right=side_x, pad_top=side_y, pad_bottom=side_y)
        out_width, out_height = _round8(width), _round8(height)
    else:
        side = _PAN_SIDES[action]
        pads[side] = _round8((width if side in ("pad_left", "pad_right") else height) / 2)
        out_width = _round8(width + pads["pad_left"] + pads["pad_right"])
        out_height = _round8(height + pads["pad_top"] + pads["pad_bottom"])
    return {
        **pads,
        "feathering": _round8(min(width, height) / 12),
        "width": out_width,
        "height": out_height,
    }


def blend_values(
    images: Sequence[str], *, width: int, height: int, denoise: float = BLEND_DENOISE
) -> dict[str, object]:
    """The values that fill a blend template's five image slots with 2 to 5 images, weighing them equally.

    `images` are the names LoadImage takes (what `/upload/image` answered), in order; `width` x `height` is
    the size each image is scaled and centre-cropped to, which is also the output size (multiples of 8).
    Slot k gets image k and `blend_factor_k` = 1/k, its share of the mix of images 1..k, so each of n
    images ends up weighing 1/n. Unused slots load the first image again with factor 0.0 and add nothing.
    `denoise` is returned too, so that merging these values over a fresh prompt's (denoise 1.0, which
    would ignore the images) keeps the blend's.
    """
    count = len(images)
    if not BLEND_MIN_IMAGES <= count <= BLEND_SLOTS:
        raise ValueError(f"a blend takes {BLEND_MIN_IMAGES} to {BLEND_SLOTS} images, got {count}")
    if not all(isinstance(name, str) and name for name in images):
        raise ValueError(f"image names must be non-empty strings, got {list(images)!r}")
    for label, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 8:
            raise ValueError(f"{label} must be a positive multiple of 8, got {size!r}")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise!r}")
    values: dict[str, object] = {"width": width, "height": height, "denoise": denoise}
    for slot, name in enumerate(_BLEND_IMAGES, start=1):
        values[name] = images[slot - 1] if slot <= count else images[0]
    for slot, name in enumerate(_BLEND_FACTORS, start=2):
        values[name] = 1.0 / slot if slot <= count else 0.0
    return values


# --- parsing and validation -------------------------------------------------------------------------


def _parse_template(
    *,
    name: str,
    kind: str,
    raw: bytes,
    bindings: Mapping[str, str | Sequence[str]],
    supports_tile: bool,
    source: str,
    where: str,
) -> WorkflowTemplate:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TemplateError(
            f"{where}: not UTF-8 text; use the .json file ComfyUI's Export (API) saves"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    graph = _check_api_format(data, where)
    resolved: dict[str, tuple[Binding, ...]] = {}
    taken: dict[Binding, str] = {}
    for param, spec in bindings.items():
        targets = [spec] if isinstance(spec, str) else list(spec)
        if param not in PARAMETERS:
            raise TemplateError(
                f"{where}: binding {param!r}: unknown parameter; allowed: {', '.join(PARAMETERS)}"
            )
        if not targets:
            raise TemplateError(f"{where}: binding {param!r}: empty list; give at least one 'NODE.input'")
        found: list[Binding] = []
        for target in targets:
            binding = _resolve_target(graph, f"{where}: binding {param!r} -> {target!r}", target)
            if binding in taken:
                raise TemplateError(
                    f"{where}: binding {param!r} -> {target!r}: that input is already bound to {taken[binding]!r}"
                )
            taken[binding] = param
            found.append(binding)
        resolved[param] = tuple(found)
    if "tile" in resolved and not supports_tile:
        raise TemplateError(f"{where}: binds 'tile' but supports_tile is false; set supports_tile = true")
    if supports_tile and "tile" not in resolved:
        raise TemplateError(f"{where}: supports_tile is true but no binding for 'tile' (a boolean input)")
    missing = [param for param in _KIND_NEEDS[kind] if param not in resolved]
    if missing:
        raise TemplateError(
            f"{where}: a template of kind {kind!r} must bind {' and '.join(repr(p) for p in missing)}"
        )
    template = WorkflowTemplate(
        name=name, kind=kind, graph=graph, bindings=resolved, supports_tile=supports_tile, source=source
    )
    if not template.output_node_ids():
        raise TemplateError(
            f"{where}: no output node ({', '.join(sorted(OUTPUT_CLASSES))}); add a SaveImage node, "
            "or bind 'filename_prefix' to your own save node"
        )
    return template


def _check_api_format(data: object, where: str) -> dict[str, Any]:
    if isinstance(data, dict) and (
        isinstance(data.get("nodes"), list) or isinstance(data.get("links"), list)
    ):
        raise TemplateError(
            f"{where}: this is the UI format (it has 'nodes' and 'links'); use Export (API): in ComfyUI "
            "open Workflow > Export (API) (older versions: enable dev mode, then 'Save (API Format)')"
        )
    if not isinstance(data, dict):
        raise TemplateError(
            f'{where}: expected a JSON object of nodes like {{"3": {{"class_type": ..., "inputs": ...}}}}, '
            f"got {type(data).__name__}"
        )
    if not data:
        raise TemplateError(f"{where}: the workflow has no nodes")
    for node_id, node in data.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not node["class_type"]
            or not isinstance(node.get("inputs"), dict)
        ):
            raise TemplateError(
                f"{where}: node {node_id!r} is not an API-format node (it needs 'class_type' and 'inputs'); "
                "use the file ComfyUI's Export (API) saves"
            )
        meta = node.get("_meta")
        if meta is not None and not isinstance(meta, dict):
            raise TemplateError(f"{where}: node {node_id!r}: '_meta' must be an object")
        for input_name, value in node["inputs"].items():
            if _is_link(value) and value[0] not in data:
                raise TemplateError(
                    f"{where}: node {node_id!r} input {input_name!r} links to node {value[0]!r}, "
                    "which is not in the workflow"
                )
    return data


def _resolve_target(graph: Mapping[str, Any], where: str, target: object) -> Binding:
    if not isinstance(target, str):
        raise TemplateError(f"{where}: must be a string 'NODE.input'")
    ref, dot, input_name = target.rpartition(".")
    if not dot or not ref or not input_name:
        raise TemplateError(f"{where}: write it as 'NODE.input' (NODE is a node id or a node title)")
    if ref in graph:
        node_id = ref
    else:
        matches = [nid for nid, node in graph.items() if _title(node) == ref]
        if not matches:
            raise TemplateError(f"{where}: no node with id or title {ref!r}")
        if len(matches) > 1:
            raise TemplateError(
                f"{where}: title {ref!r} is used by nodes {', '.join(matches)}; titles must be unique to "
                "be used in a binding (rename one in ComfyUI, or use the node id)"
            )
        node_id = matches[0]
    node = graph[node_id]
    inputs = node["inputs"]
    if input_name not in inputs:
        raise TemplateError(
            f"{where}: node {node_id} ({_describe(node)}) has no input {input_name!r}; "
            f"it has: {', '.join(inputs) or 'no inputs'}"
        )
    if _is_link(inputs[input_name]):
        raise TemplateError(
            f"{where}: input {input_name!r} of node {node_id} is a link from node {inputs[input_name][0]}; "
            "bind an input that holds a value (e.g. the text of a CLIPTextEncode node)"
        )
    return Binding(node_id=node_id, input=input_name)


def _check_value(template: str, param: str, value: object) -> None:
    allowed = PARAMETERS.get(param, ())
    ok = isinstance(value, allowed) and (param == "tile" or not isinstance(value, bool))
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        names = " or ".join(kind.__name__ for kind in allowed)
        raise TemplateError(f"template {template!r}: {param!r} must be {names}, got {value!r}")


def input_choices(object_info: Mapping[str, Any], class_type: str, input_name: str) -> list[str] | None:
    """The choices a backend offers for one combo input (e.g. `CheckpointLoaderSimple`'s `ckpt_name`).

    None when the node class or the input is unknown, or the input is not a list of choices.
    """
    info = object_info.get(class_type)
    for section in ("required", "optional"):
        choices = _combo_options(_section(info, section).get(input_name))
        if choices is not None:
            return [str(choice) for choice in choices]
    return None


# --- /object_info helpers ---------------------------------------------------------------------------


def _section(info: object, section: str) -> Mapping[str, Any]:
    inputs = info.get("input") if isinstance(info, Mapping) else None
    value = inputs.get(section) if isinstance(inputs, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _input_specs(info: Mapping[str, Any]) -> dict[str, Any]:
    return {**_section(info, "required"), **_section(info, "optional")}


def _combo_options(spec: object) -> list[Any] | None:
    """The choices of a combo input spec: `[[a, b], {...}]` or the newer `["COMBO", {"options": [...]}]`."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    head = spec[0]
    if isinstance(head, list | tuple):
        return list(head)
    if head == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        options = spec[1].get("options")
        if isinstance(options, list | tuple):
            return list(options)
    return None


def _check_link(graph: Mapping[str, Any], object_info: Mapping[str, Any], link: Any, spec: Any) -> str | None:
    source = graph[link[0]]
    source_info = object_info.get(source["class_type"])
    if not isinstance(source_info, Mapping):
        return None  # reported as a missing class already
    outputs = source_info.get("output") or []
    if not 0 <= link[1] < len(outputs):
        return f"links to output {link[1]} of node {link[0]}, but {source['class_type']} has {len(outputs)}"
    produced = outputs[link[1]]
    declared = spec[0] if isinstance(spec, list | tuple) and spec else None
    if not isinstance(produced, str) or not isinstance(declared, str) or declared == "COMBO":
        return None
    accepted = declared.split(",")
    if "*" in accepted or produced == "*" or produced in accepted:
        return None
    return f"expects {declared} but node {link[0]} ({source['class_type']}) gives {produced}"


def _check_literal(value: Any, spec: Any) -> str | None:
    if not isinstance(spec, list | tuple) or not spec:
        return None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    choices = _combo_options(spec)
    if choices is not None:
        if options.get("image_upload") or options.get("remote") or value in choices:
            return None
        return f"{value!r} is not one of this ComfyUI's choices ({_preview(choices) if choices else 'none'})"
    if spec[0] in ("INT", "FLOAT") and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = options.get("min"), options.get("max")
        if isinstance(low, int | float) and value < low:
            return f"{value!r} is below the minimum {low}"
        if isinstance(high, int | float) and value > high:
            return f"{value!r} is above the maximum {high}"
    return None


# --- small helpers ----------------------------------------------------------------------------------


def _is_link(value: object) -> bool:
    """ComfyUI's notion of a link: `[source_node_id, output_index]`."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _title(node: Mapping[str, Any]) -> str | None:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) else None


def _describe(node: Mapping[str, Any]) -> str:
    title = _title(node)
    return f"{title!r}, {node['class_type']}" if title else str(node["class_type"])


def _preview(options: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(option) for option in options[:limit])
    return f"{shown} and {len(options) - limit} more" if len(options) > limit else shown


def _round8(value: float) -> int:
    return max(8, math.floor(value / 8 + 0.5) * 8)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(item) for item in value]
    return value
