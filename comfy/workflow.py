"""Workflow templates: the built-in and the operator's, loaded, validated and chosen per model and kind.

The built-in templates live in `comfy/templates/<kind>.json`; an operator's come from `[[templates]]` in
config.toml. What a template is and how it renders: comfy.workflow_template.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from comfy.blend import BLEND_FACTORS, BLEND_IMAGES, BLEND_MIN_IMAGES, BLEND_SLOTS, blend_values
from comfy.outpaint import outpaint_padding
from comfy.profiles import TEMPLATE_KINDS, ModelProfile, TemplateConfig
from comfy.workflow_template import (
    OUTPUT_CLASSES,
    PARAMETERS,
    Binding,
    TemplateError,
    WorkflowTemplate,
    describe_node,
    is_link,
    node_title,
)

# BLEND_MIN_IMAGES, BLEND_SLOTS, blend_values and outpaint_padding live in comfy.blend and comfy.outpaint;
# they are re-exported because comfy/render.py (another branch's file) imports them from here, as that
# branch's bot/job_service.py does. Import them from their homes, then drop them here.
__all__ = [
    "BLEND_MIN_IMAGES",
    "BLEND_SLOTS",
    "TemplateRegistry",
    "blend_values",
    "load_builtin_templates",
    "load_template",
    "outpaint_padding",
]

log = logging.getLogger(__name__)

# What a template of each kind must bind to be usable by the bot.
_KIND_NEEDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        **dict.fromkeys(TEMPLATE_KINDS, ("image",)),
        "txt2img": ("positive", "seed"),
        "blend": (*BLEND_IMAGES, *BLEND_FACTORS),
    }
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
            **{name: f"Image {slot}.image" for slot, name in enumerate(BLEND_IMAGES, start=1)},
            **{name: f"Mix {slot}.blend_factor" for slot, name in enumerate(BLEND_FACTORS, start=2)},
            "width": [f"Resize {slot}.width" for slot in range(1, BLEND_SLOTS + 1)],
            "height": [f"Resize {slot}.height" for slot in range(1, BLEND_SLOTS + 1)],
            "batch_size": "Batch.amount",
            "denoise": "Sampler.denoise",
        },
    }
)


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
            if is_link(value) and value[0] not in data:
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
        matches = [nid for nid, node in graph.items() if node_title(node) == ref]
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
            f"{where}: node {node_id} ({describe_node(node)}) has no input {input_name!r}; "
            f"it has: {', '.join(inputs) or 'no inputs'}"
        )
    if is_link(inputs[input_name]):
        raise TemplateError(
            f"{where}: input {input_name!r} of node {node_id} is a link from node {inputs[input_name][0]}; "
            "bind an input that holds a value (e.g. the text of a CLIPTextEncode node)"
        )
    return Binding(node_id=node_id, input=input_name)
