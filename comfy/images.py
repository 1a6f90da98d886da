"""Image helpers with Pillow: the 2x2 grid, sizes, and re-encoding to fit an upload limit."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

GRID_GAP = 0  # Midjourney's grids have no gutter; keep pixels exact for U1-U4 crops.


class ImageError(ValueError):
    """Bytes that are not an image Pillow can read."""


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """Encoded image bytes with their format (`png`, `jpeg`, `webp`) and size in pixels."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """The file extension for this format, without the dot."""
        return {"jpeg": "jpg"}.get(self.format, self.format)


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of encoded image bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(f"not a readable image: {exc}") from None


def compose_grid(images: Sequence[bytes], columns: int = 2) -> EncodedImage:
    """Paste up to four images into a grid (2x2 for four) as a PNG; cells take the first image's size."""
    if not images:
        raise ImageError("no images to put in a grid")
    opened = []
    try:
        for data in images:
            try:
                opened.append(Image.open(io.BytesIO(data)))
            except Exception as exc:
                raise ImageError(f"not a readable image: {exc}") from None
        cell_w, cell_h = opened[0].size
        cols = min(columns, len(opened))
        rows = (len(opened) + cols - 1) // cols
        grid = Image.new(
            "RGB", (cols * cell_w + (cols - 1) * GRID_GAP, rows * cell_h + (rows - 1) * GRID_GAP)
        )
        for index, image in enumerate(opened):
            cell = image.convert("RGB")
            if cell.size != (cell_w, cell_h):
                cell = cell.resize((cell_w, cell_h), Image.Resampling.LANCZOS)
            x = (index % cols) * (cell_w + GRID_GAP)
            y = (index // cols) * (cell_h + GRID_GAP)
            grid.paste(cell, (x, y))
        out = io.BytesIO()
        grid.save(out, format="PNG", optimize=False, compress_level=4)
        return EncodedImage(out.getvalue(), "png", grid.width, grid.height)
    finally:
        for image in opened:
            image.close()


def fit_to_limit(data: bytes, limit_bytes: int) -> EncodedImage:
    """Return the image unchanged when it fits, else re-encode it (WebP, then JPEG, then smaller) to fit.

    Discord refuses uploads over the guild's `filesize_limit`; a 2x2 grid of 1024px PNGs easily passes 8 MiB.
    """
    width, height = image_size(data)
    if len(data) <= limit_bytes:
        return EncodedImage(data, _format_of(data), width, height)
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    scale = 1.0
    while True:
        candidate = (
            image
            if scale == 1.0
            else image.resize(
                (max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                Image.Resampling.LANCZOS,
            )
        )
        for fmt, quality in (("webp", 90), ("jpeg", 90), ("webp", 75), ("jpeg", 75)):
            out = io.BytesIO()
            candidate.save(out, format=fmt.upper(), quality=quality)
            if out.tell() <= limit_bytes:
                return EncodedImage(out.getvalue(), fmt, candidate.width, candidate.height)
        if candidate.width <= 64 or candidate.height <= 64:
            raise ImageError(f"cannot fit the image in {limit_bytes} bytes")
        scale *= 0.75


def _format_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    with Image.open(io.BytesIO(data)) as image:
        return (image.format or "png").lower()
