"""Benchmark: how long after a kill -9 another bot process drives the dead one's backends again.

    python -m bench.takeover                      # lease_s 15 and 3, 4 runs each
    python -m bench.takeover --lease-s 3 --runs 8

Two bot processes (`bench/_bot_process.py`, the real `Services` each) share one PostgreSQL database
(`tests.pg.postgres_server`, durable defaults; `--fast` turns fsync off) and two fake ComfyUIs, each in a
process of its own, with the same config and `scheduler.lease_s`. Process A starts first and takes both
backends' leases; then, after a random delay of up to one renewal interval (so that B's renewal rounds
fall anywhere relative to A's), B starts (it holds nothing). Two jobs are queued (one lands on each backend) and
the other processes are woken as `Scheduler.submit` does. Each job lasts about 5/3 lease_s + 4 s (100
sampler steps), so it still runs when B takes over. Once both run on ComfyUI, after a random delay of up
to one renewal interval (so the kill falls anywhere in A's renewal cycle), A gets SIGKILL. Nothing of A
runs after that: its leases run out on the database server's clock, then B's lease keeper (every
lease_s/3) takes them, re-attaches to the prompts and follows them to their end.

Per backend and run, from the time just before the SIGKILL (every process prints wall-clock times;
they share one host):
- lease left: the lease's `expires_at` (read just before the kill) minus the kill;
- lease taken: B holds the backend (B polls its `Backend.held` every 10 ms);
- re-attached: B publishes `Started` for the job (it follows the running prompt again);
- progress: B publishes its first `Progress` for the job (live steps from ComfyUI again);
- stall: B's first `Progress` minus A's last one: how long the member's progress bar stood still.
Expected: lease taken = lease left + up to one renewal interval (lease_s/3), so between 2/3 and 4/3 of
lease_s after the kill. Each job must complete through B with its prompt executed once on ComfyUI.
Prints a table and writes JSON to bench/results/takeover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench._bot_process import BotProcess, write_config
from bench._harness import executed_since, fake_comfy_processes, waiting_jobs
from bot.backends import stable_client_id
from bot.event_relay import CHANNEL
from bot.store import PostgresStore
from comfy.client import ComfyClient
from comfy.profiles import BackendConfig, ModelProfile
from tests.pg import Databases, postgres_server

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = 100
BACKENDS = ("gpu0", "gpu1")


def job_seconds(lease_s: float) -> float:
    """How long each job runs on ComfyUI: past the latest takeover (4/3 lease_s after a kill that comes
    up to 1/3 lease_s after the start), with a few seconds to spare."""
    return math.ceil(lease_s * 5 / 3 + 4)


async def _wake(url: str) -> None:
    """Tell the bot processes that jobs were queued, as a process's `Scheduler.submit` does (its relay's
    `wake` message)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps({"o": "bench", "k": "wake"}))
    finally:
        await conn.close()


async def run_once(url: str, comfy_urls: list[str], lease_s: float, rng: random.Random) -> dict[str, Any]:
    """One kill: A drives both backends with a job running on each, A is killed, B takes over."""
    model = ModelProfile(
        name="tiny", checkpoint="random_sd15_tiny.safetensors", width=64, height=64, steps=STEPS
    )
    store = await PostgresStore.open(url, max_size=2)
    bots: list[BotProcess] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = write_config(
                Path(folder) / "config.toml",
                database=url,
                backend_urls=comfy_urls,
                model=model.name,
                steps=STEPS,
                lease_s=lease_s,
            )
            a = await BotProcess.start("A", config)
            bots.append(a)
            await a.until(lambda: a.held() == set(BACKENDS), limit_s=30)
            # B's renewal rounds (every lease_s/3 from its start) fall anywhere relative to A's.
            await asyncio.sleep(rng.uniform(0.0, lease_s / 3))
            b = await BotProcess.start("B", config)
            bots.append(b)
            began = time.time()
            new = waiting_jobs(len(BACKENDS), model, [1], channel_id=1, seed=rng.randrange(1 << 30))
            created = await store.enqueue_many(new)
            await _wake(url)
            await a.until(lambda: all(a.events("Progress", job.id) for job in created), limit_s=60)
            on_backend = {r.args[2]: int(r.args[1]) for r in a.events("Started")}
            if sorted(on_backend) != list(BACKENDS):
                raise RuntimeError(f"expected one job on each backend, got {on_backend}")
            await asyncio.sleep(rng.uniform(0.0, lease_s / 3))
            leases = await store.backend_leases()
            load_before = os.getloadavg()
            killed_at = a.kill()
            jobs = {job.id for job in created}
            await b.until(
                lambda: {int(r.args[1]) for r in b.events("Completed")} >= jobs,
                limit_s=lease_s * 2 + job_seconds(lease_s) + 30,
            )
            load_after = os.getloadavg()
            rows = []
            b_started_after_a = b.records[0].t - a.records[0].t
            for backend, job_id in sorted(on_backend.items()):
                taken = next(r.t for r in b.records if r.what == "held" and r.args[0] == backend)
                reattached = b.events("Started", job_id)[0].t
                first_progress = b.events("Progress", job_id)[0].t
                last_progress_a = a.events("Progress", job_id)[-1].t
                expires_at = leases[backend].expires_at
                job = await store.get(job_id)
                assert job is not None
                client = ComfyClient(
                    BackendConfig(name=backend, url=comfy_urls[BACKENDS.index(backend)], timeout_s=60),
                    client_id=stable_client_id("bench", backend),
                )
                try:
                    executed = await executed_since(client, began)
                finally:
                    await client.close()
                rows.append(
                    {
                        "backend": backend,
                        "job": job_id,
                        "holder_before": leases[backend].holder,
                        "b_ready_after_a_s": b_started_after_a,
                        "lease_left_s": expires_at - killed_at,
                        "lease_taken_s": taken - killed_at,
                        "taken_after_expiry_s": taken - expires_at,
                        "reattached_s": reattached - killed_at,
                        "progress_s": first_progress - killed_at,
                        "stall_s": first_progress - last_progress_a,
                        "status": job.status.value,
                        "executed_on_comfy": len(executed),
                        "executed_is_the_jobs_prompt": list(executed) == [job.prompt_id],
                    }
                )
    except BaseException:
        for bot in bots:  # what each process said, for the post-mortem
            for record in bot.records:
                if record.what != "event" or record.args[0] != "Progress":
                    print(bot.name, record, file=sys.stderr)
        raise
    finally:
        for bot in bots:
            await bot.stop()
        await store.close()
    return {
        "lease_s": lease_s,
        "renew_interval_s": lease_s / 3,
        "job_s": job_seconds(lease_s),
        "holders": {bot.name: bot.holder for bot in bots},
        "per_backend": rows,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


async def run(leases: list[float], runs: int, durable: bool, seed: int | None) -> list[dict[str, Any]]:
    """`runs` kills for each lease length, each on a fresh database."""
    rng = random.Random(seed)
    results = []
    with postgres_server(durable=durable) as server:
        databases = Databases(server)
        for lease_s in leases:
            step_time = job_seconds(lease_s) / STEPS
            async with fake_comfy_processes(len(BACKENDS), step_time) as comfy_urls:
                for number in range(1, runs + 1):
                    name, url = await databases.create()
                    try:
                        result = await run_once(url, comfy_urls, lease_s, rng)
                    finally:
                        await databases.drop(name)
                    result.update(run=number, durable=durable, step_time=step_time)
                    results.append(result)
                    print(_rows([result]), flush=True)
    return results


def _rows(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        load = f"{result['loadavg_before'][0]:.1f}-{result['loadavg_after'][0]:.1f}"
        for row in result["per_backend"]:
            lines.append(
                f"{result['lease_s']:>7g} | {result['run']:>3} | {row['backend']:>7} | "
                f"{row['lease_left_s']:10.2f} | {row['lease_taken_s']:11.2f} | {row['reattached_s']:11.2f} | "
                f"{row['progress_s']:10.2f} | {row['stall_s']:7.2f} | {row['status']:>9} | "
                f"{row['executed_on_comfy']:>8} | {load}"
            )
    return "\n".join(lines)


HEADER = (
    "lease_s | run | backend | lease left | lease taken | re-attached | progress | stall s | job      "
    " | executed | load 1m\n"
    "        |     |         |  at kill s |  after kill |  after kill | after kill |         |          "
    " |          |"
)


def _summary(results: list[dict[str, Any]]) -> str:
    lines = [
        "lease_s | kills | backends | lease taken after kill: min / median / max s | progress after kill | stall"
    ]
    for lease_s in sorted({r["lease_s"] for r in results}, reverse=True):
        kills = sum(1 for r in results if r["lease_s"] == lease_s)
        rows = [row for r in results if r["lease_s"] == lease_s for row in r["per_backend"]]

        def spread(key: str, rows: list[dict[str, Any]] = rows) -> str:
            values = [row[key] for row in rows]
            return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"

        lines.append(
            f"{lease_s:>7g} | {kills:>5} | {len(rows):>8} | {spread('lease_taken_s'):>43} | "
            f"{spread('progress_s'):>19} | {spread('stall_s')}"
        )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lease-s", default="15,3", help="comma list of scheduler.lease_s values")
    parser.add_argument("--runs", type=int, default=4, help="kills per lease length")
    parser.add_argument("--seed", type=int, help="seed of the random delay before each kill")
    parser.add_argument("--fast", action="store_true", help="PostgreSQL: fsync and synchronous commit off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    leases = [float(x) for x in args.lease_s.split(",")]
    print(HEADER, flush=True)
    results = asyncio.run(run(leases, args.runs, durable=not args.fast, seed=args.seed))
    print(_summary(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "takeover.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
