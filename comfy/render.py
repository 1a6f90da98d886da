"""From a job's parsed request (and, for follow-ups, its source image) to a template's parameter values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from comfy.actions import ACTIONS, ACTIONS_BY_NAME, action_named
from comfy.params import GenerationRequest
from comfy.workflow import blend_values, outpaint_padding

MAX_CANVAS_SIDE = 4096  # pans grow the canvas; stop before ComfyUI runs out of memory


class RenderProblem(StrEnum):
    """Why a template's values cannot be made; the fields of `RenderError` each problem fills are listed."""

    UNKNOWN_ACTION = "unknown_action"  # action; choices: the actions made of an image
    NEEDS_SOURCE_IMAGE = "needs_source_image"  # kind: the template kind that starts from an image
    ALREADY_LARGEST = "already_largest"  # side: the most pixels a side (an upscale of a large image)
    CANVAS_TOO_LARGE = "canvas_too_large"  # side: the most pixels a side (a zoom or pan past it)


class RenderError(ValueError):
    """A follow-up that cannot be made (for example, a pan past the largest canvas). It carries the problem
    and its facts, never a sentence (cogs/_words/params.py words it); `str(exc)` is for logs.

    `encode()` and `decode()` keep it in a failed job's record, the way `bot.reasons.Failure` is kept.
    """

    def __init__(
        self,
        problem: RenderProblem,
        *,
        action: str | None = None,
        kind: str | None = None,
        side: int | None = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.problem = problem
        self.action = action
        self.kind = kind
        self.side = side
        self.choices = choices
        facts = {"action": action, "kind": kind, "side": side, "choices": choices or None}
        shown = ", ".join(f"{key}={fact!r}" for key, fact in facts.items() if fact is not None)
        super().__init__(f"{problem.value} ({shown})" if shown else problem.value)

    def encode(self) -> str:
        """The problem and its one fact (the choices follow from ACTIONS): `canvas_too_large/4096`."""
        fact = self.action if self.action is not None else self.kind if self.kind is not None else self.side
        return self.problem.value if fact is None else f"{self.problem.value}/{fact}"

    @classmethod
    def decode(cls, text: str) -> RenderError | None:
        """The error `encode` wrote, or None for text it did not write."""
        name, _, fact = text.partition("/")
        if name not in RenderProblem._value2member_map_:
            return None
        problem = RenderProblem(name)
        match problem:
            case RenderProblem.UNKNOWN_ACTION:
                return cls(problem, action=fact, choices=_image_actions())
            case RenderProblem.NEEDS_SOURCE_IMAGE:
                return cls(problem, kind=fact)
            case RenderProblem.ALREADY_LARGEST | RenderProblem.CANVAS_TOO_LARGE:
                return cls(problem, side=int(fact)) if fact.isdigit() else None


@dataclass(frozen=True, slots=True)
class SourceImage:
    """A parent image already uploaded to ComfyUI: the name LoadImage takes, and its size in pixels."""

    name: str
    width: int
    height: int


def _image_actions() -> tuple[str, ...]:
    return tuple(a.name for a in ACTIONS if a.from_image)


def kind_for(action: str | None, has_image: bool = False) -> str:
    """The template kind for a follow-up `action` (None: a fresh prompt, img2img when it has an image)."""
    if action is None:
        return "img2img" if has_image else "txt2img"
    follow_up = action_named(action)
    if follow_up is None or follow_up.template is None:
        raise RenderError(RenderProblem.UNKNOWN_ACTION, action=action, choices=_image_actions())
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
        raise RenderError(RenderProblem.NEEDS_SOURCE_IMAGE, kind=kind)
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
            raise RenderError(RenderProblem.ALREADY_LARGEST, side=MAX_CANVAS_SIDE)
    if follow_up.zoom is not None or follow_up.pan_side is not None:
        zoom = request.zoom if follow_up.zoom_from_prompt else None
        padding = outpaint_padding(source.width, source.height, follow_up.name, zoom=zoom)
        if max(padding["width"], padding["height"]) > MAX_CANVAS_SIDE:
            raise RenderError(RenderProblem.CANVAS_TOO_LARGE, side=MAX_CANVAS_SIDE)
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
