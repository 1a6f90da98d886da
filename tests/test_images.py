"""The grid and upload-size fitting, on real images made with Pillow."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from comfy.images import ImageError, compose_grid, fit_to_limit, image_size


def _png(width: int, height: int, color: tuple[int, int, int], noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), color)
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_four_images_make_a_2x2_grid_with_each_image_in_its_quadrant() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    grid = compose_grid([_png(96, 64, c) for c in colors])
    assert (grid.width, grid.height, grid.format) == (192, 128, "png")
    with Image.open(io.BytesIO(grid.data)) as image:
        assert image.getpixel((10, 10)) == colors[0]
        assert image.getpixel((100, 10)) == colors[1]
        assert image.getpixel((10, 70)) == colors[2]
        assert image.getpixel((100, 70)) == colors[3]


def test_a_single_image_is_its_own_grid() -> None:
    grid = compose_grid([_png(64, 64, (1, 2, 3))])
    assert (grid.width, grid.height) == (64, 64)


def test_garbage_bytes_are_an_image_error() -> None:
    with pytest.raises(ImageError):
        compose_grid([b"not an image"])
    with pytest.raises(ImageError):
        image_size(b"")


def test_an_image_under_the_limit_is_returned_unchanged() -> None:
    data = _png(64, 64, (9, 9, 9))
    fitted = fit_to_limit(data, len(data))
    assert fitted.data == data and fitted.format == "png"


def test_an_image_over_the_limit_is_reencoded_under_it() -> None:
    data = _png(512, 512, (0, 0, 0), noise=True)
    limit = len(data) // 4
    fitted = fit_to_limit(data, limit)
    assert len(fitted.data) <= limit
    assert fitted.format in {"webp", "jpeg"}
    assert image_size(fitted.data) == (fitted.width, fitted.height)
