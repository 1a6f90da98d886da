"""The follow-up actions a member can start from a finished job: one row each, everything else derives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Action:
    """One follow-up action: what it is called, what it makes, what it keeps, and its button.

    Every action keeps the parent's prompt and parameters; an action `from_image` starts from one of the
    parent's images (a reroll runs the parent's own request again, image prompt and all), and only those
    that `keeps_seed` keep its seed.

    Remix: for a member who turned Remix on, an action that `remixes` first asks for the prompt (a modal
    prefilled with the parent's); one `zoom_from_prompt` always asks, and its zoom factor is the prompt's
    `--zoom` (`zoom` being the factor it offers).

    `name` is stored on the job and carried in button custom_ids, so it must never change once released.
    Buttons: under a single image an action with a `row` gets a button (its `label` and `emoji`); on a
    grid an action with a `grid_row` gets one button per image labelled `grid_label` + number (U1-U4),
    or, without a `grid_label`, one button showing its `emoji`.
    """

    name: str
    title: str  # how members read it: headlines, the Info button, "Queued: …"
    template: str | None  # the template kind that renders it; None: the parent's own request again
    keeps_seed: bool = False  # the new job draws the same seed (else a new one)
    names_image: bool = False  # headlines say which image of the parent it started from
    denoise: float | None = None  # how much of the source image the sampler may repaint
    scale_by: float | None = None  # upscale factor
    zoom: float | None = None  # zoom-out factor: the canvas grows this much around the picture
    zoom_from_prompt: bool = False  # always asks for the prompt; its `--zoom` (1 to 2) overrides `zoom`
    remixes: bool = True  # with Remix on, asks for the prompt before it starts
    pan_side: str | None = None  # the side the canvas grows on: left, right, top or bottom
    label: str | None = None
    emoji: str | None = None
    row: int | None = None
    grid_label: str | None = None
    grid_row: int | None = None

    @property
    def from_image(self) -> bool:
        """Whether it starts from one image of the parent (every action but a reroll)."""
        return self.template is not None


# In the order their buttons appear under a single image.
# fmt: off
ACTIONS: Final[tuple[Action, ...]] = (
    Action(
        "vary_strong", "Variations (Strong)", "variation", names_image=True, denoise=0.75,
        label="Vary (Strong)", emoji="🪄", row=0, grid_label="V", grid_row=1,
    ),
    Action(
        "vary_subtle", "Variations (Subtle)", "variation", names_image=True, denoise=0.45,
        label="Vary (Subtle)", emoji="🪄", row=0,
    ),
    Action(
        "upscale_2x", "Upscale (2x)", "upscale", keeps_seed=True, names_image=True, denoise=0.35,
        scale_by=2.0, remixes=False, label="Upscale 2x", emoji="🔍", row=0, grid_label="U", grid_row=0,
    ),
    Action("zoom_1.5", "Zoom Out 1.5x", "zoom", denoise=1.0, zoom=1.5, label="Zoom Out 1.5x", emoji="🔎", row=1),
    Action("zoom_2", "Zoom Out 2x", "zoom", denoise=1.0, zoom=2.0, label="Zoom Out 2x", emoji="🔎", row=1),
    Action(
        "zoom_custom", "Custom Zoom", "zoom", denoise=1.0, zoom=2.0, zoom_from_prompt=True,
        label="Custom Zoom", emoji="🔍", row=1,
    ),
    Action("pan_left", "Pan Left", "pan", denoise=1.0, pan_side="left", emoji="⬅️", row=2),
    Action("pan_right", "Pan Right", "pan", denoise=1.0, pan_side="right", emoji="➡️", row=2),
    Action("pan_up", "Pan Up", "pan", denoise=1.0, pan_side="top", emoji="⬆️", row=2),
    Action("pan_down", "Pan Down", "pan", denoise=1.0, pan_side="bottom", emoji="⬇️", row=2),
    Action("reroll", "Reroll", None, emoji="🔄", grid_row=0),
)
# fmt: on

ACTIONS_BY_NAME: Final[Mapping[str, Action]] = MappingProxyType({a.name: a for a in ACTIONS})
REROLL: Final[Action] = next(a for a in ACTIONS if not a.from_image)
OUTPAINT_ACTIONS: Final[tuple[Action, ...]] = tuple(
    a for a in ACTIONS if a.zoom is not None or a.pan_side is not None
)


def action_named(name: str | None) -> Action | None:
    """The action called `name`, or None when there is none (or `name` is None)."""
    return ACTIONS_BY_NAME.get(name) if name is not None else None
