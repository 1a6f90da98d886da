"""A backend's `/object_info`: checking a template against its nodes, and the choices it offers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from comfy.workflow_template import TemplateError, WorkflowTemplate, describe_node, is_link


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
        where = f"{label}: node {node_id} ({describe_node(node)})"
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
            if is_link(value):
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


def _preview(options: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(option) for option in options[:limit])
    return f"{shown} and {len(options) - limit} more" if len(options) > limit else shown
