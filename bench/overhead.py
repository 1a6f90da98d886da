"""Benchmark: what the bot adds to one job, beyond ComfyUI's own execution time.

    python -m bench.overhead                      # 50 sequential jobs on one fake ComfyUI

Each job is submitted alone (`Scheduler.submit`) and awaited until its Completed event (the images are
downloaded from ComfyUI and saved, the grid made; no Discord upload). ComfyUI's execution time comes from
its own `/history` timestamps (execution_start -> execution_success). Overhead = end-to-end - execution,
split into before (submit -> execution_start) and after (execution_success -> Completed).
Prints a table and writes JSON to bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._harness import percentile, waiting_jobs
from bot.backends import Backend, stable_client_id
from bot.events import Completed, EventBus, Failed
from bot.outputs import OutputStore
from bot.scheduler import Scheduler, SchedulerSettings
from bot.store import JobStore
from comfy.client import ComfyClient
from comfy.profiles import BackendConfig, ModelProfile
from comfy.workflow import TemplateRegistry, load_builtin_templates
from tests.fakes.comfy_server import FakeComfyUI

RESULTS = Path(__file__).resolve().parent / "results"


async def run(jobs: int, step_time: float, steps: int) -> dict[str, Any]:
    """Run `jobs` jobs one after the other and measure each one's overhead."""
    model = ModelProfile(
        name="tiny", checkpoint="random_sd15_tiny.safetensors", width=64, height=64, steps=steps
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        async with FakeComfyUI(step_time=step_time) as fake:
            store = await JobStore.open(f"{folder}/bench.db")
            bus = EventBus()
            inbox = bus.subscribe()
            config = BackendConfig(name="gpu0", url=fake.url, timeout_s=60)
            client = ComfyClient(config, client_id=stable_client_id(folder, config.name))
            scheduler = Scheduler(
                store=store,
                backends=[Backend(config=config, client=client, prefetch=1)],
                templates=TemplateRegistry(load_builtin_templates()),
                outputs=OutputStore(Path(folder) / "out"),
                bus=bus,
                settings=SchedulerSettings(models=[model], job_timeout_s=600),
            )
            await scheduler.start()
            try:
                for new_job in waiting_jobs(jobs, model, [1], 1):
                    begin = time.time()
                    job = (await scheduler.submit([new_job]))[0]
                    while True:
                        event = await inbox.get()
                        if event.job_id == job.id and isinstance(event, Completed | Failed):
                            break
                    end = time.time()
                    if isinstance(event, Failed):
                        raise RuntimeError(f"job {job.id} failed: {event.failure}")
                    stored = await store.get(job.id)
                    assert stored is not None and stored.prompt_id is not None
                    entry = await client.history(stored.prompt_id)
                    assert entry is not None and entry.status is not None
                    started = entry.status.message("execution_start")["timestamp"] / 1000
                    succeeded = entry.status.message("execution_success")["timestamp"] / 1000
                    rows.append(
                        {
                            "end_to_end_ms": (end - begin) * 1000,
                            "execution_ms": (succeeded - started) * 1000,
                            "overhead_ms": (end - begin - (succeeded - started)) * 1000,
                            "before_ms": (started - begin) * 1000,
                            "after_ms": (end - succeeded) * 1000,
                        }
                    )
            finally:
                await scheduler.stop()
                await client.close()
                await store.close()
    summary: dict[str, Any] = {"jobs": len(rows), "step_time_s": step_time, "steps": steps}
    for key in ("end_to_end_ms", "execution_ms", "overhead_ms", "before_ms", "after_ms"):
        values = [row[key] for row in rows]
        summary[key] = {"p50": statistics.median(values), "p99": percentile(values, 0.99), "max": max(values)}
    summary["rows"] = rows
    return summary


def _table(summary: dict[str, Any]) -> str:
    lines = [f"{summary['jobs']} sequential jobs | p50 ms | p99 ms | max ms"]
    for key, label in (
        ("end_to_end_ms", "end-to-end"),
        ("execution_ms", "ComfyUI execution"),
        ("overhead_ms", "overhead"),
        ("before_ms", "  submit -> start"),
        ("after_ms", "  success -> Completed"),
    ):
        values = summary[key]
        lines.append(f"{label:<22} | {values['p50']:6.1f} | {values['p99']:6.1f} | {values['max']:6.1f}")
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--step-time", type=float, default=0.05, help="fake seconds per sampler step")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    summary = asyncio.run(run(args.jobs, args.step_time, args.steps))
    print(_table(summary))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
