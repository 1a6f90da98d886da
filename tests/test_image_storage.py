"""Image storage: the local folder and an S3 bucket (a real S3 API on loopback) behave the same."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.image_storage import FolderStorage, ImageStorage, S3Storage, StorageError, check_key
from tests.s3 import S3Server


@pytest.fixture(params=["folder", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImageStorage]:
    """Each storage implementation, empty."""
    if request.param == "folder":
        yield FolderStorage(tmp_path / "images")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        yield S3Storage(server.new_bucket(), prefix="bot-a", endpoint_url=server.endpoint_url, env=server.env)


async def test_put_then_get_returns_the_same_bytes(storage: ImageStorage) -> None:
    await storage.put("12_0.png", b"\x89PNG one")
    await storage.put("image_prompts/ab.png", b"two")
    assert await storage.get("12_0.png") == b"\x89PNG one"
    assert await storage.get("image_prompts/ab.png") == b"two"
    assert await storage.exists("12_0.png")


async def test_put_replaces_an_existing_object(storage: ImageStorage) -> None:
    await storage.put("a.png", b"old")
    await storage.put("a.png", b"new")
    assert await storage.get("a.png") == b"new"


async def test_missing_key_raises_file_not_found(storage: ImageStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.get("nothing.png")
    assert not await storage.exists("nothing.png")
    assert not await storage.touch("nothing.png")


async def test_list_by_prefix_and_delete(storage: ImageStorage) -> None:
    for key in ("1_0.png", "1_grid.webp", "image_prompts/x.png", "image_prompts/y.png"):
        await storage.put(key, key.encode())
    listed = await storage.list("image_prompts/")
    assert [o.key for o in listed] == ["image_prompts/x.png", "image_prompts/y.png"]
    assert [o.size for o in listed] == [len(b"image_prompts/x.png")] * 2
    assert {o.key for o in await storage.list()} == {
        "1_0.png",
        "1_grid.webp",
        "image_prompts/x.png",
        "image_prompts/y.png",
    }
    await storage.delete(["image_prompts/x.png", "1_0.png", "gone.png"])
    assert {o.key for o in await storage.list()} == {"1_grid.webp", "image_prompts/y.png"}


async def test_touch_renews_the_modification_time_of_a_file(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    await storage.put("image_prompts/t.png", b"data")
    old = (await storage.list("image_prompts/"))[0].modified - 3600
    os.utime(storage.path("image_prompts/t.png"), (old, old))
    assert await storage.touch("image_prompts/t.png")
    assert (await storage.list("image_prompts/"))[0].modified > old + 3000


async def test_touch_keeps_the_object(storage: ImageStorage) -> None:
    await storage.put("image_prompts/t.png", b"data")
    before = (await storage.list("image_prompts/"))[0].modified
    assert await storage.touch("image_prompts/t.png")
    assert (await storage.list("image_prompts/"))[0].modified >= before
    assert await storage.get("image_prompts/t.png") == b"data"


async def test_two_processes_see_the_same_bucket(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    writer = S3Storage(bucket, prefix="shared", endpoint_url=s3_server.endpoint_url, env=s3_server.env)
    reader = S3Storage(bucket, prefix="shared", endpoint_url=s3_server.endpoint_url, env=s3_server.env)
    other_prefix = S3Storage(bucket, prefix="other", endpoint_url=s3_server.endpoint_url, env=s3_server.env)
    await writer.put("7_0.png", b"made by process A")
    assert await reader.get("7_0.png") == b"made by process A"
    assert not await other_prefix.exists("7_0.png")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.png", "a//b.png", "a/./b", "", "a b.png", "a\\b"])
def test_keys_that_could_escape_the_storage_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


async def test_a_missing_bucket_is_an_error_that_names_the_bucket(s3_server: S3Server) -> None:
    storage = S3Storage("no-such-bucket", endpoint_url=s3_server.endpoint_url, env=s3_server.env)
    with pytest.raises(StorageError, match="no-such-bucket"):
        await storage.put("a.png", b"x")


def test_location_and_repr_carry_no_credentials(s3_server: S3Server) -> None:
    storage = S3Storage("bkt", prefix="p", endpoint_url=s3_server.endpoint_url, env=s3_server.env)
    for text in (storage.location, repr(storage)):
        assert "bkt" in text
        assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in text
        assert s3_server.env["AWS_ACCESS_KEY_ID"] not in text


async def test_folder_storage_write_failure_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    storage = FolderStorage(blocker)
    with pytest.raises(StorageError, match="output_dir"):
        await storage.put("a.png", b"x")
