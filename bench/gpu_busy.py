"""Benchmark: does the GPU ever wait on the bot? Busy ratio and idle gap per backend under a backlog.

    python -m bench.gpu_busy                       # fake ComfyUI servers, 1, 2 and 4 backends
    python -m bench.gpu_busy --real http://127.0.0.1:8188 --checkpoint random_sd15_tiny.safetensors

50 jobs wait in the queue (over 5 guilds) before the scheduler starts. For each backend, ComfyUI's own
`/history` timestamps give each prompt's execution span (execution_start -> execution_success): the busy
ratio is the sum of spans over the backend's whole span, and the idle gap is the time between one prompt's
success and the next prompt's start. Throughput is reported twice against one backend: `vs 1` from the
wall time of the whole run (50 jobs over 4 backends is 13 on one of them, so at most 50/13 = 3.85x), and
`steady vs 1` from the sum of the backends' own rates (jobs / their span), which is what a fleet fed without
pause delivers. Each fake server runs in a process of its own (`--inline`: in the bot's process). Prints a
table and writes JSON to bench/results/gpu_busy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from bench._harness import execution_spans, fake_comfy_processes, percentile
from bot.backends import Backend, stable_client_id
from bot.events import Completed, EventBus, Failed
from bot.jobs import JobKind, NewJob
from bot.outputs import OutputStore
from bot.scheduler import Scheduler, SchedulerSettings
from bot.store import JobStore
from comfy.client import ComfyClient
from comfy.models import QueuedPrompt
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import BackendConfig, ModelProfile
from comfy.workflow import TemplateRegistry, load_builtin_templates
from tests.fakes.comfy_server import FakeComfyUI

RESULTS = Path(__file__).resolve().parent / "results"


def _jobs(count: int, model: ModelProfile) -> list[NewJob]:
    rng = random.Random(1)
    jobs = []
    for index in range(count):
        request = parse_prompt(f"benchmark prompt {index}", ParseContext(models=[model], rng=rng))[0]
        jobs.append(
            NewJob(
                guild_id=index % 5,
                channel_id=1,
                user_id=index % 7,
                kind=JobKind.IMAGINE,
                prompt=request.text,
                request_json=request_to_json(request),
                model=model.name,
            )
        )
    return jobs


def _record_posts(client: ComfyClient, posted_at: dict[str, float]) -> None:
    """Note the wall-clock time each prompt was accepted by ComfyUI, to compare with its own timestamps."""
    queue_prompt = client.queue_prompt

    async def recording(
        graph: Mapping[str, Any], prompt_id: str | None = None, **kwargs: Any
    ) -> QueuedPrompt:
        queued = await queue_prompt(graph, prompt_id, **kwargs)
        posted_at[queued.prompt_id] = time.time()
        return queued

    client.queue_prompt = recording  # type: ignore[method-assign]


async def run(urls: list[str], model: ModelProfile, jobs: int, prefetch: int) -> dict[str, Any]:
    """Queue `jobs` jobs, run them over the backends at `urls`, and measure each backend."""
    with tempfile.TemporaryDirectory() as folder:
        store = await JobStore.open(f"{folder}/bench.db")
        bus = EventBus()
        inbox = bus.subscribe()
        backends = [
            Backend(
                config=(config := BackendConfig(name=f"gpu{i}", url=url, timeout_s=60)),
                client=ComfyClient(config, client_id=stable_client_id(folder, config.name)),
                prefetch=prefetch,
            )
            for i, url in enumerate(urls)
        ]
        posted_at: dict[str, float] = {}  # prompt id -> wall-clock time ComfyUI accepted it
        for backend in backends:
            _record_posts(backend.client, posted_at)
        scheduler = Scheduler(
            store=store,
            backends=backends,
            templates=TemplateRegistry(load_builtin_templates()),
            outputs=OutputStore(Path(folder) / "out"),
            bus=bus,
            settings=SchedulerSettings(models=[model], job_timeout_s=3600),
        )
        created = await store.enqueue_many(_jobs(jobs, model))
        begin = time.perf_counter()
        await scheduler.start()
        remaining = {job.id for job in created}
        while remaining:
            event = await inbox.get()
            if isinstance(event, Completed | Failed):
                remaining.discard(event.job_id)
                if isinstance(event, Failed):
                    raise RuntimeError(f"job {event.job_id} failed: {event.failure}")
        wall = time.perf_counter() - begin
        per_backend = []
        for backend in backends:
            prompt_ids = [
                job.prompt_id
                for job in [await store.get(j.id) for j in created]
                if job is not None and job.backend == backend.name and job.prompt_id
            ]
            spans = await execution_spans(backend.client, prompt_ids)
            gaps = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(spans)]
            # A gap is the bot's fault only if the next prompt was not yet in ComfyUI's queue when the
            # previous one ended; otherwise ComfyUI itself idled (its periodic gc between prompts).
            posted = sorted(posted_at[p] for p in prompt_ids if p in posted_at)
            late = sum(
                1 for (a, b), t in zip(itertools.pairwise(spans), posted[1:], strict=False) if t > a[1]
            )
            busy = sum(end - start for start, end in spans)
            span = spans[-1][1] - spans[0][0] if spans else 0.0
            per_backend.append(
                {
                    "backend": backend.name,
                    "jobs": len(spans),
                    "jobs_per_s": len(spans) / span if span else 0.0,
                    "busy_ratio": busy / span if span else 0.0,
                    "gap_ms_p50": statistics.median(gaps) if gaps else 0.0,
                    "gap_ms_p99": percentile(gaps, 0.99),
                    "gap_ms_max": max(gaps, default=0.0),
                    "gaps_ms": gaps,
                    "next_prompt_posted_late": late,
                }
            )
        await scheduler.stop()
        await store.close()
        return {"backends": len(urls), "jobs": jobs, "wall_s": wall, "per_backend": per_backend}


@contextlib.asynccontextmanager
async def _fakes_inline(count: int, step_time: float) -> AsyncIterator[list[str]]:
    """`count` fake ComfyUI servers in this process (they share the bot's event loop and core)."""
    fakes = [FakeComfyUI(step_time=step_time) for _ in range(count)]
    try:
        for fake in fakes:
            await fake.start()
        yield [fake.url for fake in fakes]
    finally:
        for fake in fakes:
            await fake.close()


async def _fake_runs(
    counts: list[int], jobs: int, step_time: float, steps: int, processes: bool
) -> list[dict[str, Any]]:
    model = ModelProfile(
        name="tiny", checkpoint="random_sd15_tiny.safetensors", width=64, height=64, steps=steps
    )
    fakes = fake_comfy_processes if processes else _fakes_inline
    results = []
    for count in counts:
        async with fakes(count, step_time) as urls:
            results.append(await run(urls, model, jobs, prefetch=1))
    return results


def _steady_rate(result: dict[str, Any]) -> float:
    """Jobs per second of all backends together while each is fed: the sum of the backends' own rates."""
    return float(sum(row["jobs_per_s"] for row in result["per_backend"]))


def _table(results: list[dict[str, Any]]) -> str:
    base = results[0]["jobs"] / results[0]["wall_s"]
    steady_base = _steady_rate(results[0])
    lines = [
        "backends | jobs/s | vs 1 | steady vs 1 | backend | busy ratio | gap p50 ms | gap p99 ms | gap max ms"
        " | posted late"
    ]
    for result in results:
        rate = result["jobs"] / result["wall_s"]
        steady = _steady_rate(result) / steady_base if steady_base else 0.0
        result["vs_one"] = rate / base
        result["steady_vs_one"] = steady
        for row in result["per_backend"]:
            lines.append(
                f"{result['backends']:>8} | {rate:6.2f} | {rate / base:4.2f} | {steady:11.2f} | {row['backend']:>7} | "
                f"{row['busy_ratio']:10.4f} | {row['gap_ms_p50']:10.1f} | {row['gap_ms_p99']:10.1f} | "
                f"{row['gap_ms_max']:10.1f} | {row['next_prompt_posted_late']:11d}"
            )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--backends", default="1,2,4", help="comma list of backend counts (fake runs)")
    parser.add_argument("--step-time", type=float, default=0.05, help="fake seconds per sampler step")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--inline",
        action="store_true",
        help="run the fake servers in the bot's process (default: one process each, like separate GPUs)",
    )
    parser.add_argument("--real", help="URL of a real ComfyUI instead of fakes")
    parser.add_argument("--checkpoint", default="random_sd15_tiny.safetensors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.real:
        model = ModelProfile(name="real", checkpoint=args.checkpoint, width=64, height=64, steps=args.steps)
        results = [asyncio.run(run([args.real], model, args.jobs, prefetch=1))]
    else:
        counts = [int(c) for c in args.backends.split(",")]
        results = asyncio.run(
            _fake_runs(counts, args.jobs, args.step_time, args.steps, processes=not args.inline)
        )
    print(_table(results))
    RESULTS.mkdir(exist_ok=True)
    name = "gpu_busy_real.json" if args.real else "gpu_busy.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
