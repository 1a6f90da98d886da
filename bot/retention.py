"""Retention: old images and finished jobs are removed by age (`retention_days`) and total size (`max_total_mb`);
images members attached to /imagine (`image_prompts/`) go once they are older than `retention_days` and no
job left in the database uses them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import PurePosixPath

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
    files: list[str] = [*paths, *{_grid_of(p) for p in paths}]
    if retention_days > 0:
        files += await _unused_image_prompts(store, outputs, now() - retention_days * 86400)
    removed = await outputs.delete(files)
    if removed:
        log.info("retention removed %d file(s)", removed)
    return removed


async def _unused_image_prompts(store: Store, outputs: OutputStore, before: float) -> list[str]:
    """Attached images last written or used before `before` that no job in the database refers to."""
    old = [o for o in await outputs.stored(f"{IMAGE_PROMPT_DIR}/") if o.modified < before]
    if not old:
        return []
    used = {PurePosixPath(file).name for file in await store.image_prompt_files_in_use()}
    return [str(outputs.ref(o.key)) for o in old if PurePosixPath(o.key).name not in used]


def _grid_of(ref: str) -> str:
    """`.../{job}_{index}.png` -> `.../{job}_grid.png` (a path or a key)."""
    folder, _, name = ref.rpartition("/")
    job = name.rsplit(".", 1)[0].rsplit("_", 1)[0]
    return f"{folder}/{job}_grid.png" if folder else f"{job}_grid.png"
