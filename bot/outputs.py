"""Generated and attached images: `{job_id}_{index}.png`, `{job_id}_grid.png`, `image_prompts/...`, kept in the
configured storage (a local folder, or an S3-compatible bucket shared by every process)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from bot.image_storage import FolderStorage, ImageStorage, StorageError, StoredObject, check_key
from bot.reasons import Failure, FailureKind
from comfy.images import ImageError, compose_grid, image_size

log = logging.getLogger(__name__)


class OutputError(Exception):
    """Images could not be saved: `failure` says why (the message, for the log, holds no path)."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image written for a job; `path` is its reference (see `OutputStore`)."""

    index: int
    path: PurePath
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class SavedOutputs:
    """All images written for a job: the images in order and the grid when there are several."""

    images: tuple[SavedImage, ...]
    grid: PurePath | None


class OutputStore:
    """A job's images and the images members attach, kept in the configured `ImageStorage`.

    Jobs refer to their images by reference: with the local folder (the default) a reference is the file's
    absolute path, as every job made before object storage has; with an S3 bucket it is the object's key
    (`123_0.png`), the same for every process that shares the bucket. `read`, `exists` and `delete` take
    either, so stores copied from a single-machine install keep working.
    """

    def __init__(self, root: Path, storage: ImageStorage | None = None) -> None:
        """`root` is the local folder (with a bucket, only a scratch folder); `storage` None: that folder."""
        self.root = root
        self.storage: ImageStorage = storage if storage is not None else FolderStorage(root)
        self._local = isinstance(self.storage, FolderStorage)

    @property
    def location(self) -> str:
        """Where the images are, for operators."""
        return self.storage.location

    def ref(self, key: str) -> PurePath:
        """The reference jobs keep for the image stored under `key`."""
        return self.root / key if self._local else PurePosixPath(key)

    def image_ref(self, job_id: int, index: int) -> PurePath:
        """The reference of image `index` of a job."""
        return self.ref(f"{job_id}_{index}.png")

    def grid_ref(self, job_id: int) -> PurePath:
        """The reference of a job's grid."""
        return self.ref(f"{job_id}_grid.png")

    async def save(self, job_id: int, images: Sequence[bytes]) -> SavedOutputs:
        """Write a job's images (and their grid when there are several); raises `OutputError`."""
        try:
            prepared = await asyncio.to_thread(_prepare, list(images))
        except ImageError as exc:
            failure = Failure(FailureKind.UNREADABLE_IMAGE, str(exc))
            raise OutputError(failure, f"ComfyUI returned an image that cannot be read ({exc})") from None
        sizes, grid_data = prepared
        try:
            saved = []
            for index, (data, (width, height)) in enumerate(zip(images, sizes, strict=True)):
                key = f"{job_id}_{index}.png"
                await self.storage.put(key, data)
                saved.append(SavedImage(index, self.ref(key), width, height, len(data)))
            grid = None
            if grid_data is not None:
                await self.storage.put(f"{job_id}_grid.png", grid_data)
                grid = self.grid_ref(job_id)
        except OSError as exc:
            cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ is not None else exc
            if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                log.error("disk full while saving job %s in %s (storage.output_dir)", job_id, self.location)
                raise OutputError(
                    Failure(FailureKind.DISK_FULL), "disk full: the images could not be saved"
                ) from None
            log.error("cannot save job %s images in %s: %s", job_id, self.location, exc)
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
            raise OutputError(
                Failure(FailureKind.NOT_SAVED), f"the images could not be saved ({reason})"
            ) from None
        return SavedOutputs(tuple(saved), grid)

    async def read(self, ref: str | PurePath) -> bytes:
        """The bytes of an image by reference; `FileNotFoundError` (an OSError) when it is gone."""
        text = str(ref)
        if os.path.isabs(text):
            return await asyncio.to_thread(Path(text).read_bytes)
        return await self.storage.get(check_key(text))

    async def exists(self, ref: str | PurePath) -> bool:
        """Whether an image is still kept."""
        text = str(ref)
        if os.path.isabs(text):
            return await asyncio.to_thread(Path(text).is_file)
        return await self.storage.exists(check_key(text))

    async def put_once(self, key: str, data: bytes) -> None:
        """Keep `data` under `key` unless it is there already (keys are content hashes); an existing one is
        touched, so retention (which removes unused attached images by age) sees it as new."""
        if not await self.storage.touch(key):
            await self.storage.put(key, data)

    async def stored(self, prefix: str) -> list[StoredObject]:
        """The stored images whose key starts with `prefix` (a folder such as `image_prompts/`)."""
        return await self.storage.list(prefix)

    async def delete(self, refs: Iterable[str | PurePath]) -> int:
        """Delete images by reference (missing ones are fine); returns how many were removed."""
        local: list[Path] = []
        keys: list[str] = []
        for ref in refs:
            text = str(ref)
            if os.path.isabs(text):
                local.append(Path(text))
            else:
                keys.append(check_key(text))
        removed = await asyncio.to_thread(self._delete, local)
        if keys:
            try:
                removed += await self.storage.delete(keys)
            except OSError as exc:
                log.warning("cannot delete %d image(s) from %s: %s", len(keys), self.location, exc)
        return removed

    @staticmethod
    def _delete(paths: list[Path]) -> int:
        removed = 0
        for path in paths:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc)
        return removed


def _prepare(images: list[bytes]) -> tuple[list[tuple[int, int]], bytes | None]:
    """Each image's size and the grid of several (raises ImageError for an image that cannot be read)."""
    return [image_size(data) for data in images], grid_of(images)


def grid_of(images: Sequence[bytes]) -> bytes | None:
    """The 2x2 (or smaller) grid PNG of several images, None for a single one; raises ImageError."""
    return compose_grid(images).data if len(images) > 1 else None
