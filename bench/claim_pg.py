"""Benchmark: claims and /imagine's database work on PostgreSQL with 10,000 jobs waiting.

    python -m bench.claim_pg                     # 10,000 waiting over 100 guilds x 10 members, 2 stores

PostgreSQL comes from `tests/pg.py`: the server named by COMFY_IMAGINE_TEST_PG_URL, else a local one
from the pgserver wheel started with PostgreSQL's durable defaults (fsync and synchronous commit on;
`--fast` turns them off as the tests do), on a unix socket. Each store is its own asyncpg pool, as a
bot process would have.

The queue is filled through `PostgresStore.enqueue_many` (one command per member per round, so
every guild and member keeps a FIFO of waiting jobs). Then, with the queue kept at the backlog size:
- enqueue: one `/imagine` command's insert, `enqueue_many` with every limit on (they count the member's
  and the guild's jobs under the advisory locks, as the bot does);
- ack: the whole database part of the /imagine acknowledgement: `get_user_settings`,
  `enqueue_many` with limits, `positions(guild)` (the scheduler's position announcement) and `position_of`;
- claim: `claim_next` from one store, any model, then restricted to one model (half the jobs);
- claim, N stores: `claim_next` from `--stores` stores at once (processes competing for the
  claim lock), per-call latency.
Prints a table and writes JSON to bench/results/claim_pg.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from bench._harness import percentile
from bot.jobs import EnqueueLimits, JobKind, NewJob
from bot.store import PostgresStore
from tests.pg import Databases, postgres_server

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("sdxl", "flux")
# On, and far enough away that no command of the benchmark is refused.
LIMITS = EnqueueLimits(per_user_active=100_000, per_guild_queued=100_000, per_user_per_minute=100_000)


def _job(guild: int, user: int, index: int) -> NewJob:
    return NewJob(
        guild_id=1_000_000 + guild,
        channel_id=5_000_000 + guild,
        user_id=2_000_000 + guild * 1000 + user,
        kind=JobKind.IMAGINE,
        prompt=f"benchmark prompt {index} --ar 16:9",
        request_json=json.dumps({"prompt": f"benchmark prompt {index}", "seed": index}),
        model=MODELS[index % len(MODELS)],
    )


async def _fill(store: PostgresStore, waiting: int, guilds: int, members: int) -> None:
    """Queue `waiting` jobs, round after round of one job per member of every guild."""
    index = 0
    while index < waiting:
        batch = []
        for guild in range(guilds):
            for user in range(members):
                if index + len(batch) < waiting:
                    batch.append(_job(guild, user, index + len(batch)))
        for start in range(0, len(batch), 500):  # several commands' worth per call, unlimited
            await store.enqueue_many(batch[start : start + 500])
        index += len(batch)


def _summary(name: str, samples: list[float], waiting: int) -> dict[str, Any]:
    return {
        "measure": name,
        "waiting": waiting,
        "samples": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples),
    }


async def run(
    waiting: int, guilds: int, members: int, samples: int, stores: int, fast: bool
) -> list[dict[str, Any]]:
    """Fill a fresh database and measure every figure of the table."""
    with postgres_server(durable=not fast) as server:
        databases = Databases(server)
        name, url = await databases.create()
        opened = [await PostgresStore.open(url, max_size=4) for _ in range(max(1, stores))]
        try:
            return await _measure(opened, waiting, guilds, members, samples, fast)
        finally:
            for store in opened:
                await store.close()
            await databases.drop(name)


async def _measure(
    opened: list[PostgresStore], waiting: int, guilds: int, members: int, samples: int, fast: bool
) -> list[dict[str, Any]]:
    store = opened[0]
    clock = time.perf_counter
    began = clock()
    await _fill(store, waiting, guilds, members)
    fill_s = clock() - began
    index = waiting
    enqueue: list[float] = []
    ack: list[float] = []
    claims: list[float] = []
    for i in range(samples):  # an enqueue, an acknowledged command and a claim: the backlog holds
        guild, user = i % guilds, (i * 7) % members
        began = clock()
        await store.enqueue_many([_job(guild, user, index)], LIMITS)
        enqueue.append((clock() - began) * 1000)

        job = _job(guild, user, index + 1)
        began = clock()
        await store.get_user_settings(job.user_id)
        (created,) = await store.enqueue_many([job], LIMITS)
        await store.positions(job.guild_id)
        await store.position_of(created.id)
        ack.append((clock() - began) * 1000)

        began = clock()
        await store.claim_next("gpu0")
        claims.append((clock() - began) * 1000)
        index += 2
    restricted: list[float] = []
    for _ in range(samples):
        began = clock()
        await store.claim_next("gpu1", {MODELS[0]})
        restricted.append((clock() - began) * 1000)
    results = [  # `waiting`: the backlog when the row's measurement began
        _summary("enqueue (limits on)", enqueue, waiting),
        _summary("ack database part", ack, waiting),
        _summary("claim_next", claims, waiting),
        _summary(f"claim_next, models={{{MODELS[0]}}}", restricted, waiting + samples),
    ]
    if len(opened) > 1:
        left = await _queued(store, guilds)
        per_call: list[float] = []

        async def claimer(other: PostgresStore) -> None:
            for _ in range(samples // len(opened)):
                started = clock()
                await other.claim_next("gpu2")
                per_call.append((clock() - started) * 1000)

        began = clock()
        await asyncio.gather(*(claimer(other) for other in opened))
        elapsed = clock() - began
        row = _summary(f"claim_next, {len(opened)} stores at once", per_call, left)
        row["claims_per_s"] = len(per_call) / elapsed
        results.append(row)
    for row in results:
        row["fill_s"] = fill_s
        row["durable"] = not fast
    return results


async def _queued(store: PostgresStore, guilds: int) -> int:
    return sum([await store.count_queued_for_guild(1_000_000 + g) for g in range(guilds)])


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["measure                            | waiting | samples | p50 ms | p99 ms | max ms"]
    for row in results:
        extra = f" | {row['claims_per_s']:.0f} claims/s" if "claims_per_s" in row else ""
        lines.append(
            f"{row['measure']:<34} | {row['waiting']:>7} | {row['samples']:>7} | {row['p50_ms']:6.2f} | "
            f"{row['p99_ms']:6.2f} | {row['max_ms']:6.2f}{extra}"
        )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", type=int, default=10_000, help="jobs waiting before measuring")
    parser.add_argument("--guilds", type=int, default=100)
    parser.add_argument("--members", type=int, default=10, help="members per guild")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--stores", type=int, default=2, help="stores (pools) claiming at once in the last row"
    )
    parser.add_argument(
        "--fast", action="store_true", help="fsync and synchronous commit off, as in the tests"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args.waiting, args.guilds, args.members, args.samples, args.stores, args.fast))
    print(f"filled {args.waiting} waiting jobs in {results[0]['fill_s']:.1f} s (durable: {not args.fast})")
    print(_table(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "claim_pg.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
