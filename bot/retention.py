"""Retention: old images and finished jobs are removed by age (`retention_days`) and total size (`max_total_mb`);
images members attached to /imagine (`image_prompts/`) go once they are older than `retention_days` and no
job left in the database uses them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bot.outputs import OutputStore
from bot.scheduler import IMAGE_PROMPT_DIR
from bot.store import Store

log = logging.getLogger(__name__)


async def apply_retention(
    store: Store,
    outputs: OutputStore,
    *,
    retention_days: float,
    max_total_mb: int,
    now: Callable[[], float],
) -> int:
    """Delete finished jobs past the age limit, then the oldest ones while over the size cap.

    Returns how many files were deleted. Jobs still waiting or running, and parents of such jobs, are kept.
    """
    paths: list[str] = []
    if retention_days > 0:
        paths += await store.purge_finished_before(now() - retention_days * 86400)
    if max_total_mb > 0:
        cap = max_total_mb * 1024 * 1024
        excess = await store.total_output_bytes() - cap
        if excess > 0:
            cutoff = None
            for finished_at, size in await store.finished_output_bytes():
                excess -= size
                cutoff = finished_at
                if excess <= 0:
                    break
            if cutoff is not None:
                paths += await store.purge_finished_before(cutoff + 1e-6)
    files: list[str | Path] = [*paths, *{str(_grid_of(Path(p))) for p in paths}]
    if retention_days > 0:
        files += await _unused_image_prompts(store, outputs, now() - retention_days * 86400)
    removed = await outputs.delete(files)
    if removed:
        log.info("retention removed %d file(s)", removed)
    return removed


async def _unused_image_prompts(store: Store, outputs: OutputStore, before: float) -> list[Path]:
    """Attached images last written or used before `before` that no job in the database refers to."""
    folder = outputs.root / IMAGE_PROMPT_DIR
    old = await asyncio.to_thread(_files_older_than, folder, before)
    if not old:
        return []
    used = {Path(file).name for file in await store.image_prompt_files_in_use()}
    return [path for path in old if path.name not in used]


def _files_older_than(folder: Path, before: float) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for path in entries:
        try:
            if path.is_file() and path.stat().st_mtime < before:
                found.append(path)
        except OSError:
            continue
    return found


def _grid_of(path: Path) -> Path:
    """`{job}_{index}.png` -> `{job}_grid.png`."""
    job = path.stem.rsplit("_", 1)[0]
    return path.with_name(f"{job}_grid.png")
