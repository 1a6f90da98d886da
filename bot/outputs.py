"""Generated images on disk: `{job_id}_{index}.png` and `{job_id}_grid.png`, written atomically."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.image_storage import write_atomically
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
    """One image file written for a job."""

    index: int
    path: Path
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class SavedOutputs:
    """All files written for a job: the images in order and the grid when there are several."""

    images: tuple[SavedImage, ...]
    grid: Path | None


class OutputStore:
    """Writes and deletes image files under one folder; blocking I/O runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image_path(self, job_id: int, index: int) -> Path:
        """Where image `index` of a job lives."""
        return self.root / f"{job_id}_{index}.png"

    def grid_path(self, job_id: int) -> Path:
        """Where a job's grid lives."""
        return self.root / f"{job_id}_grid.png"

    async def save(self, job_id: int, images: Sequence[bytes]) -> SavedOutputs:
        """Write a job's images (and their grid when there are several); raises `OutputError`."""
        return await asyncio.to_thread(self._save, job_id, list(images))

    def _save(self, job_id: int, images: list[bytes]) -> SavedOutputs:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            saved = []
            for index, data in enumerate(images):
                width, height = image_size(data)
                path = self.image_path(job_id, index)
                write_atomically(path, data)
                saved.append(SavedImage(index, path, width, height, len(data)))
            grid = None
            if (grid_data := grid_of(images)) is not None:
                grid = self.grid_path(job_id)
                write_atomically(grid, grid_data)
            return SavedOutputs(tuple(saved), grid)
        except ImageError as exc:
            failure = Failure(FailureKind.UNREADABLE_IMAGE, str(exc))
            raise OutputError(failure, f"ComfyUI returned an image that cannot be read ({exc})") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                log.error("disk full while saving job %s under %s (storage.output_dir)", job_id, self.root)
                failure = Failure(FailureKind.DISK_FULL)
                raise OutputError(failure, "disk full: the images could not be saved") from None
            log.error("cannot write job %s images under %s (storage.output_dir): %s", job_id, self.root, exc)
            message = f"the images could not be saved ({exc.strerror or type(exc).__name__})"
            raise OutputError(Failure(FailureKind.NOT_SAVED), message) from None

    async def delete(self, paths: Iterable[str | Path]) -> int:
        """Delete files (missing ones are fine); returns how many were removed."""
        return await asyncio.to_thread(self._delete, [Path(p) for p in paths])

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


def grid_of(images: Sequence[bytes]) -> bytes | None:
    """The 2x2 (or smaller) grid PNG of several images, None for a single one; raises ImageError."""
    return compose_grid(images).data if len(images) > 1 else None
