"""From a job's parsed request (and, for follow-ups, its source image) to a template's parameter values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comfy.actions import ACTIONS, ACTIONS_BY_NAME, action_named
from comfy.params import GenerationRequest
from comfy.workflow import blend_values, outpaint_padding

MAX_CANVAS_SIDE = 4096  # pans grow the canvas; stop before ComfyUI runs out of memory


class RenderError(ValueError):
    """A follow-up that cannot be made (for example, a pan past the largest canvas); member-readable."""


@dataclass(frozen=True, slots=True)
class SourceImage:
    """A parent image already uploaded to ComfyUI: the name LoadImage takes, and its size in pixels."""

    name: str
    width: int
    height: int


def kind_for(action: str | None, has_image: bool = False) -> str:
    """The template kind for a follow-up `action` (None: a fresh prompt, img2img when it has an image)."""
    if action is None:
        return "img2img" if has_image else "txt2img"
    follow_up = action_named(action)
    if follow_up is None or follow_up.template is None:
        allowed = ", ".join(a.name for a in ACTIONS if a.from_image)
        raise RenderError(f"unknown action {action!r}; allowed: {allowed}")
    return follow_up.template


def template_values(
    request: GenerationRequest,
    *,
    filename_prefix: str,
    action: str | None = None,
    source: SourceImage | None = None,
) -> dict[str, object]:
    """The values to render a template with, for a fresh prompt (`action` None) or a follow-up action."""
    values: dict[str, object] = {
        "positive": request.positive,
        "negative": request.negative,
        "seed": request.seed,
        "steps": request.steps,
        "cfg": request.cfg,
        "sampler": request.sampler,
        "scheduler": request.scheduler,
        "checkpoint": request.checkpoint,
        "width": request.width,
        "height": request.height,
        "batch_size": request.batch_size,
        "denoise": request.denoise,
        "filename_prefix": filename_prefix,
    }
    if request.tile:
        values["tile"] = True
    kind = kind_for(action, has_image=source is not None)
    if kind == "txt2img":
        return values
    if source is None:
        raise RenderError(f"{kind} needs a source image")
    values["image"] = source.name
    values["width"], values["height"] = source.width, source.height
    if action is None:  # an image prompt
        values["width"], values["height"] = request.width, request.height
        return values
    follow_up = ACTIONS_BY_NAME[action]  # kind_for found it
    if follow_up.denoise is not None:
        values["denoise"] = follow_up.denoise
    if follow_up.scale_by is not None:
        values.update(scale_by=follow_up.scale_by, batch_size=1)
        if max(source.width, source.height) * follow_up.scale_by > MAX_CANVAS_SIDE:
            raise RenderError(f"this image is already as large as allowed ({MAX_CANVAS_SIDE} pixels a side)")
    if follow_up.zoom is not None or follow_up.pan_side is not None:
        zoom = request.zoom if follow_up.zoom_from_prompt else None
        padding = outpaint_padding(source.width, source.height, follow_up.name, zoom=zoom)
        if max(padding["width"], padding["height"]) > MAX_CANVAS_SIDE:
            raise RenderError(
                f"the picture cannot grow past {MAX_CANVAS_SIDE} pixels a side; try zooming out"
            )
        values.update(padding)
    return values


def blend_template_values(
    request: GenerationRequest, *, filename_prefix: str, images: Sequence[str]
) -> dict[str, object]:
    """The values to render a blend template with: 2 to 5 uploaded `images` (the names LoadImage takes)
    mixed at the request's size, sampled with its seed, model and (empty or not) prompt."""
    return {
        **template_values(request, filename_prefix=filename_prefix),
        **blend_values(images, width=request.width, height=request.height),
    }
