"""Benchmark: how fast /imagine is acknowledged while thousands of jobs wait in the queue.

    python -m bench.ack_latency                  # 0, 1,000 and 10,000 waiting jobs, 150 samples each
    python -m bench.ack_latency --database postgresql   # the same on PostgreSQL (durable, see tests/pg.py)

The real ImagineBot runs against the fake Discord and one fake ComfyUI that is paused, so every job stays
waiting. The store is filled directly (`JobStore.enqueue_many`) with jobs spread over 100 guilds, the
command's own guild among them. A sample is the time from just before the fake dispatches
INTERACTION_CREATE to the moment the bot's interaction callback (the status message) reaches the fake.
After each bulk fill, `--warmup` commands are timed but kept out of p50/p99: the first command after a
fill also announces the queue positions of the guild's never-announced filled jobs (an artifact of filling
the store behind the bot's back); they are listed separately.
`--database postgresql` runs the bot on PostgreSQL instead of its SQLite file: `storage.database` is a
postgresql:// URL, so the bot's Services open a `PostgresStore` and start the event relay (LISTEN/NOTIFY)
and the lease keeper, as a bot of several processes does. The server is `tests.pg.postgres_server`: the one
named by COMFY_IMAGINE_TEST_PG_URL, else a local one from the pgserver wheel with PostgreSQL's durable
defaults (fsync and synchronous commit on; `--fast` turns them off), on a unix socket.
Prints a table and writes JSON to bench/results/ack_latency.json (ack_latency_pg.json on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench._harness import bench_bot, percentile, waiting_jobs
from tests.fakes.discord_server import FakeDiscord
from tests.pg import Databases, postgres_server

RESULTS = Path(__file__).resolve().parent / "results"
GUILDS = 100


async def _acknowledge(fake: FakeDiscord, prompt: str) -> float:
    """Milliseconds from dispatching /imagine to its interaction callback reaching the fake."""
    begin = time.time()
    handle = await fake.slash_command("imagine", {"prompt": prompt})
    call = await handle.response(timeout=10)
    if not call.ok:
        raise RuntimeError(f"the callback was rejected: {call.status} {call.response}")
    return (call.at - begin) * 1000


@contextlib.asynccontextmanager
async def _postgres_database(durable: bool) -> AsyncIterator[str]:
    """A new, empty database on the benchmark's PostgreSQL server; its URL."""
    with postgres_server(durable=durable) as server:
        databases = Databases(server)
        name, url = await databases.create()
        try:
            yield url
        finally:
            await databases.drop(name)


async def run(
    levels: list[int], samples: int, warmup: int, database: str = "sqlite", durable: bool = True
) -> list[dict[str, Any]]:
    """Measure `samples` acknowledgements (after `warmup` unmeasured ones) at each backlog size in `levels`."""
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if database == "postgresql":
            url = await stack.enter_async_context(_postgres_database(durable))
        results = await _run(levels, samples, warmup, url)
    for row in results:
        row["database"] = database
        row["durable"] = durable if database == "postgresql" else None
    return results


async def _run(
    levels: list[int], samples: int, warmup: int, database_url: str | None
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        async with bench_bot(Path(folder), database=database_url) as e2e:
            fake = e2e.discord
            for comfy in e2e.comfy:
                comfy.pause()
            store = e2e.services.store
            model = e2e.config.models[0]
            guild_ids = [fake.guild.id, *range(1, GUILDS)]
            for level in levels:
                waiting = sum([await store.count_queued_for_guild(g) for g in guild_ids])
                if level > waiting:
                    await store.enqueue_many(waiting_jobs(level - waiting, model, guild_ids, fake.channel.id))
                    waiting = sum([await store.count_queued_for_guild(g) for g in guild_ids])
                measured = [await _acknowledge(fake, f"a fox number {i}") for i in range(warmup + samples)]
                warm, latencies = measured[:warmup], measured[warmup:]
                results.append(
                    {
                        "waiting_at_start": waiting,
                        "guilds": GUILDS,
                        "store": type(store).__name__,
                        "samples": len(latencies),
                        "p50_ms": statistics.median(latencies),
                        "p99_ms": percentile(latencies, 0.99),
                        "max_ms": max(latencies),
                        "p99_ms_with_warmup": percentile(measured, 0.99),
                        "warmup_ms": warm,
                        "latencies_ms": latencies,
                    }
                )
            for comfy in e2e.comfy:
                comfy.resume()
    return results


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["waiting jobs | samples | p50 ms | p99 ms | max ms | warm-up ms (not in p50/p99)"]
    for row in results:
        lines.append(
            f"{row['waiting_at_start']:>12} | {row['samples']:>7} | {row['p50_ms']:6.1f} | "
            f"{row['p99_ms']:6.1f} | {row['max_ms']:6.1f} | " + " ".join(f"{x:.0f}" for x in row["warmup_ms"])
        )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="0,1000,10000", help="comma list of waiting-job counts")
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured commands after each fill")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--fast", action="store_true", help="PostgreSQL: fsync and synchronous commit off, as in the tests"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    levels = [int(n) for n in args.levels.split(",")]
    results = asyncio.run(run(levels, args.samples, args.warmup, args.database, durable=not args.fast))
    durable = f", durable: {not args.fast}" if args.database == "postgresql" else ""
    print(f"store: {results[0]['store']}{durable}")
    print(_table(results))
    RESULTS.mkdir(exist_ok=True)
    name = "ack_latency_pg.json" if args.database == "postgresql" else "ack_latency.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
