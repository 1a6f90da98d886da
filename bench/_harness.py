"""Shared benchmark helpers: the real bot against the fakes with overridable settings, and percentiles."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from pathlib import Path

from bot.jobs import JobKind, NewJob
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import ModelProfile
from tests.e2e import E2E, running_bot

# Limits high enough that a benchmark's burst of commands from one member is never refused.
NO_LIMITS = """
[limits]
per_user_active = 100000
per_guild_queued = 100000
per_user_per_minute = 100000
"""


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..1) of `values`, 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def waiting_jobs(count: int, model: ModelProfile, guild_ids: Sequence[int], channel_id: int) -> list[NewJob]:
    """`count` parsed /imagine jobs spread round-robin over `guild_ids`, ready for `JobStore.enqueue_many`."""
    context = ParseContext(models=[model], rng=random.Random(1))
    jobs = []
    for index in range(count):
        # A new prompt (and random seed) per job, so ComfyUI's cache never skips the work.
        request = parse_prompt(f"benchmark prompt {index}", context)[0]
        jobs.append(
            NewJob(
                guild_id=guild_ids[index % len(guild_ids)],
                channel_id=channel_id,
                user_id=1000 + index % 997,
                kind=JobKind.IMAGINE,
                prompt=request.text,
                request_json=request_to_json(request),
                model=model.name,
            )
        )
    return jobs


def bench_bot(
    folder: Path,
    *,
    comfy_count: int = 1,
    step_time: float = 0.002,
    edit_interval_s: float | None = None,
) -> contextlib.AbstractAsyncContextManager[E2E]:
    """`tests.e2e.running_bot` with the member limits off, Discord's real per-channel edit budget (the
    tests raise it), and `progress.edit_interval_s` overridable."""
    progress: dict[str, object] = {"channel_edits_per_5s": 5}
    if edit_interval_s is not None:
        progress["edit_interval_s"] = edit_interval_s
    return running_bot(
        folder, comfy_count=comfy_count, step_time=step_time, config_extra=NO_LIMITS, progress=progress
    )
