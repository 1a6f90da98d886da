"""From a job's parsed request (and, for follow-ups, its source image) to a template's parameter values."""

from __future__ import annotations

from dataclasses import dataclass

from comfy.params import GenerationRequest
from comfy.workflow import OUTPAINT_ACTIONS, outpaint_padding

# Follow-up actions a member can start from an image, and the template kind that serves each.
ACTION_KINDS: dict[str, str] = {
    "upscale_2x": "upscale",
    "vary_strong": "variation",
    "vary_subtle": "variation",
    **{action: ("zoom" if action.startswith("zoom") else "pan") for action in OUTPAINT_ACTIONS},
}
VARIATION_DENOISE = {"vary_strong": 0.75, "vary_subtle": 0.45}
UPSCALE_DENOISE = 0.35
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
    try:
        return ACTION_KINDS[action]
    except KeyError:
        raise RenderError(f"unknown action {action!r}; allowed: {', '.join(ACTION_KINDS)}") from None


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
    if kind == "img2img":
        values["width"], values["height"] = request.width, request.height
    elif kind == "variation":
        values["denoise"] = VARIATION_DENOISE[action or "vary_strong"]
    elif kind == "upscale":
        values.update(scale_by=2.0, denoise=UPSCALE_DENOISE, batch_size=1)
        if max(source.width, source.height) * 2 > MAX_CANVAS_SIDE:
            raise RenderError(f"this image is already as large as allowed ({MAX_CANVAS_SIDE} pixels a side)")
    else:  # zoom or pan
        padding = outpaint_padding(source.width, source.height, action or "")
        if max(padding["width"], padding["height"]) > MAX_CANVAS_SIDE:
            raise RenderError(
                f"the picture cannot grow past {MAX_CANVAS_SIDE} pixels a side; try zooming out"
            )
        values.update(padding)
        values["denoise"] = 1.0
    return values
