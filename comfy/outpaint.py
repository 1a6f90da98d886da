"""Zoom out and pan: the padding and output size that the zoom and pan templates get from the source image."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from comfy.actions import OUTPAINT_ACTIONS as OUTPAINT

# The zoom and pan actions of comfy.actions, by name.
OUTPAINT_ACTIONS = tuple(action.name for action in OUTPAINT)
_ZOOM_FACTORS: Mapping[str, float] = MappingProxyType(
    {action.name: action.zoom for action in OUTPAINT if action.zoom is not None}
)
_MAX_ZOOM = 4.0  # past this the old picture is a speck; the parser allows less (`--zoom` 1 to 2)
_PAN_SIDES: Mapping[str, str] = MappingProxyType(
    {action.name: f"pad_{action.pan_side}" for action in OUTPAINT if action.pan_side is not None}
)


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


def _round8(value: float) -> int:
    return max(8, math.floor(value / 8 + 0.5) * 8)
