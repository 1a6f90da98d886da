"""Retention: old images and finished jobs are removed by age (`retention_days`) and total size (`max_total_mb`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from bot.outputs import OutputStore
from bot.store import JobStore

log = logging.getLogger(__name__)


async def apply_retention(
    store: JobStore,
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
    files = [*paths, *{str(_grid_of(Path(p))) for p in paths}]
    removed = await outputs.delete(files)
    if removed:
        log.info("retention removed %d file(s)", removed)
    return removed


def _grid_of(path: Path) -> Path:
    """`{job}_{index}.png` -> `{job}_grid.png`."""
    job = path.stem.rsplit("_", 1)[0]
    return path.with_name(f"{job}_grid.png")
