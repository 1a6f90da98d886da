"""Blend (`/blend`, 2 to 5 images): the slots of a blend template and the values that fill them.

A blend template has five image slots, `image` and `image_2`..`image_5`, and mixes slot k into the mix of
slots 1..k-1 with `blend_factor_k` (k = 2..5), the share of image k in the mix of images 1..k.
`blend_values()` fills every slot for any count: unused slots repeat the first image with factor 0, so
they add nothing, and the graph keeps one shape (no nodes to prune or rewire).
"""

from __future__ import annotations

from collections.abc import Sequence

# A blend mixes 2 to 5 images; a blend template has a slot for each of the 5.
BLEND_SLOTS = 5
BLEND_MIN_IMAGES = 2
BLEND_DENOISE = 0.7  # how far the sampler may move from the mixed picture: enough to make one image of it
BLEND_IMAGES = ("image", *(f"image_{slot}" for slot in range(2, BLEND_SLOTS + 1)))  # the slots' parameters
BLEND_FACTORS = tuple(f"blend_factor_{slot}" for slot in range(2, BLEND_SLOTS + 1))


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
    for slot, name in enumerate(BLEND_IMAGES, start=1):
        values[name] = images[slot - 1] if slot <= count else images[0]
    for slot, name in enumerate(BLEND_FACTORS, start=2):
        values[name] = 1.0 / slot if slot <= count else 0.0
    return values
