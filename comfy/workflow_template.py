"""A workflow template: a ComfyUI API-format graph whose node inputs are bound to named job parameters.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from comfy.blend import BLEND_FACTORS, BLEND_IMAGES

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
        **dict.fromkeys(BLEND_IMAGES[1:], _STR),
        **dict.fromkeys(BLEND_FACTORS, _NUM),
    }
)

# Bound parameters that must be given at render time (see the module docstring).
REQUIRED_PARAMETERS = frozenset(
    {"positive", "seed", "checkpoint", "filename_prefix", *BLEND_IMAGES, *BLEND_FACTORS}
)

OUTPUT_CLASSES = frozenset(
    {"SaveImage", "PreviewImage", "SaveImageWebsocket", "SaveAnimatedWEBP", "SaveAnimatedPNG"}
)
SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})


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


def _check_value(template: str, param: str, value: object) -> None:
    allowed = PARAMETERS.get(param, ())
    ok = isinstance(value, allowed) and (param == "tile" or not isinstance(value, bool))
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        names = " or ".join(kind.__name__ for kind in allowed)
        raise TemplateError(f"template {template!r}: {param!r} must be {names}, got {value!r}")


# --- API-format graphs ------------------------------------------------------------------------------


def is_link(value: object) -> bool:
    """ComfyUI's notion of a link: `[source_node_id, output_index]`."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def node_title(node: Mapping[str, Any]) -> str | None:
    """A node's `_meta.title`, None when it has none."""
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) else None


def describe_node(node: Mapping[str, Any]) -> str:
    """A node for messages: `'Sampler', KSampler`, or its class alone when it has no title."""
    title = node_title(node)
    return f"{title!r}, {node['class_type']}" if title else str(node["class_type"])


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
