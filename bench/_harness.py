"""Shared benchmark helpers: the real bot against the fakes with overridable settings, and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bot.config import DATABASE_URL_ENV, load_config
from bot.imagine_bot import ImagineBot
from bot.jobs import JobKind, NewJob
from bot.services import Services
from comfy.client import ComfyClient
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import ModelProfile
from tests.e2e import E2E, running_bot, write_e2e_config
from tests.fakes.comfy_server import FakeComfyUI
from tests.fakes.discord_server import FakeDiscord

# Limits high enough that a benchmark's burst of commands from one member is never refused.
NO_LIMITS = """
[limits]
per_user_active = 100000
per_guild_queued = 100000
per_user_per_minute = 100000
"""


@contextlib.asynccontextmanager
async def fake_comfy_processes(count: int, step_time: float) -> AsyncIterator[list[str]]:
    """`count` fake ComfyUI servers, each in a process of its own, as real GPUs are separate machines."""
    procs = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench._fake_comfy_process", "--step-time", str(step_time),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            urls.append((await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode().strip())
        yield urls
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        await asyncio.gather(*(asyncio.wait_for(p.wait(), timeout=10) for p in procs), return_exceptions=True)


async def execution_spans(client: ComfyClient, prompt_ids: list[str]) -> list[tuple[float, float]]:
    """Each prompt's execution span (execution_start, execution_success), unix seconds, from ComfyUI's own
    `/history` timestamps; sorted."""
    spans = []
    for prompt_id in prompt_ids:
        entry = await client.history(prompt_id)
        if entry is None or entry.status is None:
            continue
        start = entry.status.message("execution_start")
        end = entry.status.message("execution_success")
        if start and end:
            spans.append((start["timestamp"] / 1000, end["timestamp"] / 1000))
    return sorted(spans)


async def executed_since(client: ComfyClient, since: float) -> dict[str, tuple[float, float]]:
    """Every prompt ComfyUI executed (successfully) that started at or after `since` (unix seconds):
    prompt id -> its execution span, from its own `/history` timestamps."""
    spans = {}
    for prompt_id, entry in (await client.history_all()).items():
        if entry.status is None:
            continue
        start = entry.status.message("execution_start")
        end = entry.status.message("execution_success")
        if start and end and start["timestamp"] / 1000 >= since:
            spans[prompt_id] = (start["timestamp"] / 1000, end["timestamp"] / 1000)
    return spans


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..1) of `values`, 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def waiting_jobs(
    count: int, model: ModelProfile, guild_ids: Sequence[int], channel_id: int, *, seed: int = 1
) -> list[NewJob]:
    """`count` parsed /imagine jobs spread round-robin over `guild_ids`, ready for `JobStore.enqueue_many`.

    The same `seed` gives the same prompts and seeds: a benchmark that sends several batches to one
    ComfyUI gives each its own, or ComfyUI's cache may answer a repeated prompt without running it."""
    context = ParseContext(models=[model], rng=random.Random(seed))
    jobs = []
    for index in range(count):
        # A new prompt (and random seed) per job, so ComfyUI's cache never skips the work.
        request = parse_prompt(f"benchmark prompt {seed}-{index}", context)[0]
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
    database: str | None = None,
) -> contextlib.AbstractAsyncContextManager[E2E]:
    """`tests.e2e.running_bot` with the member limits off, Discord's real per-channel edit budget (the
    tests raise it), and `progress.edit_interval_s` overridable; `database`, a postgresql:// URL, replaces
    the harness' SQLite file (`storage.database`)."""
    progress: dict[str, object] = {"channel_edits_per_5s": 5}
    if edit_interval_s is not None:
        progress["edit_interval_s"] = edit_interval_s
    if database is not None:
        return _bot_on_database(folder, database, comfy_count, step_time, progress)
    return running_bot(
        folder, comfy_count=comfy_count, step_time=step_time, config_extra=NO_LIMITS, progress=progress
    )


@contextlib.asynccontextmanager
async def _bot_on_database(
    folder: Path, database: str, comfy_count: int, step_time: float, progress: dict[str, object]
) -> AsyncIterator[E2E]:
    """`running_bot` with `storage.database` replaced by `database`, as `COMFY_IMAGINE_DATABASE_URL` does."""
    async with contextlib.AsyncExitStack() as stack:
        fakes = [
            await stack.enter_async_context(FakeComfyUI(step_time=step_time)) for _ in range(comfy_count)
        ]
        discord = await stack.enter_async_context(FakeDiscord())
        path = write_e2e_config(folder, discord.token, [fake.url for fake in fakes], NO_LIMITS)
        config = load_config(path, env={DATABASE_URL_ENV: database})
        config = config.model_copy(update={"progress": config.progress.model_copy(update=progress)})
        bot = ImagineBot(config=config, services=Services(config))
        task = asyncio.create_task(bot.start(discord.token), name="bench-bot")
        ready = asyncio.create_task(discord.wait_until_ready(timeout=30))
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
            raise RuntimeError("the bot stopped during start-up")
        await ready
        e2e = E2E(config, discord, fakes, bot, task)
        try:
            yield e2e
        finally:
            await e2e.stop()
