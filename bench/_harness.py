"""Shared benchmark helpers: the real bot against the fakes with overridable settings, and percentiles."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from bot.config import load_config
from bot.jobs import JobKind, NewJob
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import ModelProfile
from tests.e2e import E2E, _start_bot, write_e2e_config
from tests.fakes.comfy_server import FakeComfyUI
from tests.fakes.discord_server import FakeDiscord

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


@asynccontextmanager
async def bench_bot(
    folder: Path,
    *,
    comfy_count: int = 1,
    step_time: float = 0.002,
    edit_interval_s: float | None = None,
) -> AsyncIterator[E2E]:
    """Like `tests.e2e.running_bot`, with the member limits off and `progress.edit_interval_s` overridable."""
    fakes = [FakeComfyUI(step_time=step_time) for _ in range(comfy_count)]
    async with contextlib.AsyncExitStack() as stack:
        for fake in fakes:
            await stack.enter_async_context(fake)
        discord_fake = await stack.enter_async_context(FakeDiscord())
        path = write_e2e_config(folder, discord_fake.token, [f.url for f in fakes], NO_LIMITS)
        config = load_config(path, env={})
        if edit_interval_s is not None:
            progress = config.progress.model_copy(update={"edit_interval_s": edit_interval_s})
            config = config.model_copy(update={"progress": progress})
        bot, task = await _start_bot(config, discord_fake, None)
        e2e = E2E(config, discord_fake, fakes, bot, task, None)
        try:
            yield e2e
        finally:
            await e2e.stop()
