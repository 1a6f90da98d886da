"""Benchmark: GPU busy with two bot processes sharing one PostgreSQL database and two fake ComfyUIs.

    python -m bench.two_processes                 # 60 jobs, 2 processes x 2 backends, twice

Two bot processes (`bench/_bot_process.py`: the real `Services`, each with its own lease holder, its
event relay and its lease keeper) run on one PostgreSQL database (`tests.pg.postgres_server`, durable
defaults; `--fast` turns fsync off); both are configured with the same two backends, each a fake ComfyUI
in a process of its own (`bench/_fake_comfy_process.py`, 50 ms per step x 4 steps by default). A backlog
of `--jobs` jobs (over 5 guilds) is queued before the processes start; they start together (`--stagger`:
the second once the first is ready). Each backend is driven by the one process that holds its lease;
which process drove which backend is read from the `Started` events each process published itself.
A process takes every free lease it finds, so the first one up usually drives both backends and the other
stands by; `--split` configures process A with gpu0 only and B with gpu1 only, so that each drives one
backend and both claim from the one queue.

Per backend, from ComfyUI's own `/history` timestamps as in bench/gpu_busy.py, over every prompt it executed
during the run: busy ratio = the sum of the execution spans over the backend's whole span; idle gap = the
next prompt's execution_start minus the previous one's execution_success. `executed` counts those prompts;
more than `jobs` means some job ran more than once (a prompt whose job was run again is not its result). Prints a table and writes JSON to bench/results/two_processes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._bot_process import BotProcess, write_config
from bench._harness import executed_since, fake_comfy_processes, percentile, waiting_jobs
from bot.backends import stable_client_id
from bot.store import PostgresStore
from comfy.client import ComfyClient
from comfy.profiles import BackendConfig, ModelProfile
from tests.pg import Databases, postgres_server

RESULTS = Path(__file__).resolve().parent / "results"
GUILDS = [1, 2, 3, 4, 5]


async def run_once(
    url: str,
    comfy_urls: list[str],
    jobs: int,
    steps: int,
    lease_s: float,
    processes: int,
    stagger: bool,
    split: bool,
    seed: int,
) -> dict[str, Any]:
    """Queue `jobs`, start the bot processes, wait until every job completed, measure each backend."""
    model = ModelProfile(
        name="tiny", checkpoint="random_sd15_tiny.safetensors", width=64, height=64, steps=steps
    )
    store = await PostgresStore.open(url, max_size=2)
    bots: list[BotProcess] = []
    try:
        created = await store.enqueue_many(waiting_jobs(jobs, model, GUILDS, channel_id=1, seed=seed))
        ids = {job.id for job in created}
        with tempfile.TemporaryDirectory() as folder:
            names = [chr(ord("A") + i) for i in range(processes)]
            configs = [
                write_config(
                    Path(folder) / f"config_{name}.toml",
                    database=url,
                    backend_urls=comfy_urls,
                    only=[i % len(comfy_urls)] if split else None,
                    model=model.name,
                    steps=steps,
                    lease_s=lease_s,
                )
                for i, name in enumerate(names)
            ]
            load_before = os.getloadavg()
            began = time.time()
            if stagger:
                for name, config in zip(names, configs, strict=True):
                    bots.append(await BotProcess.start(name, config))
            else:
                starting = (BotProcess.start(n, c) for n, c in zip(names, configs, strict=True))
                bots = list(await asyncio.gather(*starting))

            def ended() -> set[int]:
                return {
                    int(r.args[1])
                    for bot in bots
                    for r in bot.events()
                    if r.args[0] in ("Completed", "Failed", "Cancelled")
                }

            await asyncio.gather(*(bot.until(lambda: ids <= ended(), limit_s=600) for bot in bots))
            failed = [int(r.args[1]) for bot in bots for r in bot.events("Failed")]
            if failed:
                raise RuntimeError(f"jobs failed: {failed}")
            wall = max(r.t for bot in bots for r in bot.events("Completed")) - began
            load_after = os.getloadavg()
            drove = {bot.name: dict(Counter(r.args[2] for r in bot.events("Started"))) for bot in bots}
            holders = {bot.name: sorted(bot.held()) for bot in bots}
            lines = {bot.name: [(r.t, r.what, *r.args) for r in bot.records] for bot in bots}
            finished = [await store.get(job_id) for job_id in sorted(ids)]
            per_backend = []
            for index, comfy_url in enumerate(comfy_urls):
                name = f"gpu{index}"
                prompt_ids = {
                    job.prompt_id
                    for job in finished
                    if job is not None and job.backend == name and job.prompt_id
                }
                backend = BackendConfig(name=name, url=comfy_url, timeout_s=60)
                client = ComfyClient(backend, client_id=stable_client_id("bench", name))
                try:
                    # Everything the backend ran during the run, also prompts whose job ran again later.
                    executed = await executed_since(client, began)
                finally:
                    await client.close()
                spans = sorted(executed.values())
                wasted = sorted(set(executed) - prompt_ids)
                gaps = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(spans)]
                busy = sum(end - start for start, end in spans)
                span = spans[-1][1] - spans[0][0] if spans else 0.0
                per_backend.append(
                    {
                        "backend": name,
                        "driven_by": sorted(p for p, counts in drove.items() if name in counts),
                        "jobs": len(prompt_ids),
                        "executed": len(spans),
                        "executed_not_the_jobs_result": len(wasted),
                        "jobs_per_s": len(spans) / span if span else 0.0,
                        "busy_ratio": busy / span if span else 0.0,
                        "gap_ms_p50": statistics.median(gaps) if gaps else 0.0,
                        "gap_ms_p99": percentile(gaps, 0.99),
                        "gap_ms_max": max(gaps, default=0.0),
                        "gaps_ms": gaps,
                    }
                )
    finally:
        for bot in bots:
            await bot.stop()
        await store.close()
    return {
        "processes": processes,
        "backends": len(comfy_urls),
        "jobs": jobs,
        "stagger": stagger,
        "split": split,
        "lease_s": lease_s,
        "wall_s": wall,
        "holders": {bot.name: bot.holder for bot in bots},
        "started_per_process": drove,
        "leases_held_at_end": holders,
        "per_backend": per_backend,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "lines": lines,
    }


async def run(
    runs: int,
    jobs: int,
    step_time: float,
    steps: int,
    lease_s: float,
    processes: int,
    stagger: bool,
    split: bool,
    durable: bool,
) -> list[dict[str, Any]]:
    """`runs` runs, each on a fresh database, against the same two fake ComfyUI processes."""
    results = []
    with postgres_server(durable=durable) as server:
        databases = Databases(server)
        async with fake_comfy_processes(2, step_time) as comfy_urls:
            for number in range(1, runs + 1):
                name, url = await databases.create()
                try:
                    result = await run_once(
                        url, comfy_urls, jobs, steps, lease_s, processes, stagger, split, seed=number
                    )
                finally:
                    await databases.drop(name)
                result.update(step_time=step_time, steps=steps, durable=durable)
                results.append(result)
                print(f"run {len(results)}: Started per process {result['started_per_process']}", flush=True)
    return results


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "run | backend | driven by | jobs | executed | jobs/s | busy ratio | gap p50 ms | gap p99 ms | gap max ms"
        " | load 1m"
    ]
    for number, result in enumerate(results, 1):
        load = f"{result['loadavg_before'][0]:.1f}-{result['loadavg_after'][0]:.1f}"
        for row in result["per_backend"]:
            lines.append(
                f"{number:>3} | {row['backend']:>7} | {','.join(row['driven_by']):>9} | {row['jobs']:>4} | "
                f"{row['executed']:>8} | {row['jobs_per_s']:6.2f} | {row['busy_ratio']:10.4f} | {row['gap_ms_p50']:10.1f} | "
                f"{row['gap_ms_p99']:10.1f} | {row['gap_ms_max']:10.1f} | {load}"
            )
        lines.append(
            f"    wall {result['wall_s']:.2f} s; Started per process {result['started_per_process']}"
        )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--step-time", type=float, default=0.05, help="fake seconds per sampler step")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lease-s", type=float, default=15.0, help="scheduler.lease_s")
    parser.add_argument(
        "--stagger", action="store_true", help="start the second process once the first is ready"
    )
    parser.add_argument(
        "--split", action="store_true", help="process A is configured with gpu0 only, B with gpu1 only"
    )
    parser.add_argument("--fast", action="store_true", help="PostgreSQL: fsync and synchronous commit off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(
        run(
            args.runs,
            args.jobs,
            args.step_time,
            args.steps,
            args.lease_s,
            args.processes,
            args.stagger,
            args.split,
            durable=not args.fast,
        )
    )
    print(_table(results))
    RESULTS.mkdir(exist_ok=True)
    name = "two_processes_split.json" if args.split else "two_processes.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
