"""Saving images: files named by job and index, a grid for several images, clear errors on failure."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.image_storage import write_atomically
from bot.outputs import OutputError, OutputStore
from bot.reasons import Failure, FailureKind


def _png(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


async def test_four_images_are_saved_with_a_grid(tmp_path: Path) -> None:
    store = OutputStore(tmp_path / "out")
    saved = await store.save(42, [_png()] * 4)
    assert [p.path.name for p in saved.images] == ["42_0.png", "42_1.png", "42_2.png", "42_3.png"]
    assert saved.grid == tmp_path / "out" / "42_grid.png"
    with Image.open(saved.grid) as grid:
        assert grid.size == (128, 128)
    assert not list((tmp_path / "out").glob("*.part"))


async def test_one_image_has_no_grid(tmp_path: Path) -> None:
    saved = await OutputStore(tmp_path).save(7, [_png(96)])
    assert saved.grid is None
    assert (saved.images[0].width, saved.images[0].height) == (96, 96)


async def test_an_unwritable_folder_fails_as_not_saved_without_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="could not be saved") as info:
        await OutputStore(blocker / "out").save(1, [_png()])
    assert info.value.failure == Failure(FailureKind.NOT_SAVED)
    assert str(tmp_path) not in str(info.value)


async def test_unreadable_image_bytes_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot be read") as info:
        await OutputStore(tmp_path).save(1, [b"garbage"])
    assert info.value.failure.kind is FailureKind.UNREADABLE_IMAGE and info.value.failure.detail


def test_an_atomic_write_replaces_the_file_whole_and_leaves_no_part_file(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"old")
    write_atomically(path, b"new image")
    assert path.read_bytes() == b"new image"
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


async def test_delete_ignores_missing_files(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    saved = await store.save(3, [_png()])
    assert await store.delete([saved.images[0].path, tmp_path / "missing.png"]) == 1
