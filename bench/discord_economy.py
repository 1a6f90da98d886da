"""Benchmark: how many Discord REST calls a job costs, and whether a burst stays under the edit limit.

    python -m bench.discord_economy               # 100 /imagine commands in one channel

The real ImagineBot (with the default `progress.edit_interval_s` = 2.0) runs against the fake Discord,
which enforces Discord's message edit limit of 5 edits per 5 s per channel and sends the X-RateLimit
headers, and one fake ComfyUI. The commands are dispatched back to back in one channel; the run ends
when every status message has become its result. A job's calls are its interaction callback, the edits
of its status message (the last one carries the result) and anything posted for it. The budget per job
is 3 + ceil(duration / edit interval), with duration measured two ways: the job's run on ComfyUI
(started -> finished in the store) and the status message's whole life (callback -> result edit). It also
reports how long a finished job's result waits for the channel (finished in the store -> result edit).
Prints a table and writes JSON to bench/results/discord_economy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._harness import bench_bot, percentile
from tests.fakes.discord_server import CALLBACK_ROUTE, EDIT_ROUTE, SEND_ROUTE, InteractionHandle

RESULTS = Path(__file__).resolve().parent / "results"


def _done(handle: InteractionHandle) -> bool:
    message = handle.original()
    return message is not None and bool(message.attachments)


def _max_per_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run(jobs: int, step_time: float, interval: float, limit_s: float) -> dict[str, Any]:
    """Dispatch `jobs` /imagine commands in one channel and account for every REST call they cause."""
    with tempfile.TemporaryDirectory() as folder:
        async with bench_bot(Path(folder), step_time=step_time, edit_interval_s=interval) as e2e:
            fake = e2e.discord
            fake.limit_channel_edits(limit=5, per=5.0)
            mark = fake.mark()
            begin = time.time()
            handles = [
                await fake.slash_command("imagine", {"prompt": f"a fox number {i}"}) for i in range(jobs)
            ]
            for handle in handles:
                call = await handle.response(timeout=30)
                if not call.ok:
                    raise RuntimeError(f"the callback was rejected: {call.status} {call.response}")
            finished = True
            try:
                await fake.wait_until(lambda: all(_done(h) for h in handles), timeout=limit_s)
            except TimeoutError:
                finished = False
            wall = time.time() - begin
            calls = fake.calls[mark:]
            store = e2e.services.store
            by_message = {}
            for job_id in range(1, jobs + 1):
                job = await store.get(job_id)
                if job is not None and job.status_message_id is not None:
                    by_message[job.status_message_id] = job
    rows = []
    for handle in handles:
        message_id = handle.record.original_message_id
        job = by_message.get(message_id) if message_id is not None else None
        mine = [
            c
            for c in calls
            if c.params.get("interaction_id") == str(handle.id)
            or c.params.get("interaction_token") == handle.token
            or c.params.get("message_id") == str(message_id)
        ]
        ok = [c for c in mine if c.status != 429]
        run_s = (job.finished_at - job.started_at) if job and job.finished_at and job.started_at else 0.0
        live_s = ok[-1].at - ok[0].at if ok else 0.0
        # ComfyUI done and images saved -> the result edit reached Discord: the wait a member sees
        result_wait_s = ok[-1].at - job.finished_at if ok and job and job.finished_at else 0.0
        edits = [c for c in ok if c.route == EDIT_ROUTE]
        rows.append(
            {
                "job_id": job.id if job else None,
                "calls": len(ok),
                "callbacks": sum(1 for c in ok if c.route == CALLBACK_ROUTE),
                "edits": len(edits),
                "rate_limited": len(mine) - len(ok),
                "run_s": run_s,
                "live_s": live_s,
                "result_wait_s": result_wait_s,
                "budget_run": 3 + math.ceil(run_s / interval),
                "budget_live": 3 + math.ceil(live_s / interval),
            }
        )
    edit_times = sorted(c.at for c in calls if c.route == EDIT_ROUTE and c.status != 429)
    span_min = (edit_times[-1] - edit_times[0]) / 60 if len(edit_times) > 1 else 0.0
    per_call = [r["calls"] for r in rows]
    return {
        "jobs": jobs,
        "finished": finished,
        "step_time_s": step_time,
        "edit_interval_s": interval,
        "wall_s": wall,
        "calls_per_job": {
            "mean": statistics.mean(per_call),
            "p50": statistics.median(per_call),
            "max": max(per_call),
        },
        "jobs_over_budget_run": sum(1 for r in rows if r["calls"] > r["budget_run"]),
        "jobs_over_budget_live": sum(1 for r in rows if r["calls"] > r["budget_live"]),
        "run_s_p50": statistics.median(r["run_s"] for r in rows),
        "live_s_p50": statistics.median(r["live_s"] for r in rows),
        "live_s_p99": percentile([r["live_s"] for r in rows], 0.99),
        "result_wait_s_p50": statistics.median(r["result_wait_s"] for r in rows),
        "result_wait_s_p99": percentile([r["result_wait_s"] for r in rows], 0.99),
        "result_wait_s_max": max(r["result_wait_s"] for r in rows),
        "responses_429": sum(1 for c in calls if c.status == 429),
        "edits_total": len(edit_times),
        "edits_per_min_mean": len(edit_times) / span_min if span_min else 0.0,
        "edits_per_min_max_window": _max_per_window(edit_times, 60.0),
        "edits_max_in_5s": _max_per_window(edit_times, 5.0),
        "channel_posts": sum(1 for c in calls if c.route == SEND_ROUTE),
        "routes": dict(Counter(f"{c.route} -> {c.status}" for c in calls)),
        "rows": rows,
    }


def _table(r: dict[str, Any]) -> str:
    c = r["calls_per_job"]
    return "\n".join(
        [
            f"jobs {r['jobs']} in one channel, edit interval {r['edit_interval_s']} s, all shown: {r['finished']}, "
            f"wall {r['wall_s']:.1f} s",
            f"calls per job: mean {c['mean']:.2f}, p50 {c['p50']}, max {c['max']}",
            f"run on ComfyUI p50 {r['run_s_p50']:.2f} s; message life p50 {r['live_s_p50']:.1f} s, "
            f"p99 {r['live_s_p99']:.1f} s",
            f"job finished -> result shown: p50 {r['result_wait_s_p50']:.1f} s, p99 {r['result_wait_s_p99']:.1f} s, "
            f"max {r['result_wait_s_max']:.1f} s",
            f"jobs over 3 + ceil(run / interval): {r['jobs_over_budget_run']}; "
            f"over 3 + ceil(life / interval): {r['jobs_over_budget_live']}",
            f"429 responses: {r['responses_429']}",
            f"channel edits: {r['edits_total']}, {r['edits_per_min_mean']:.1f}/min mean, "
            f"max {r['edits_per_min_max_window']} in any 60 s, max {r['edits_max_in_5s']} in any 5 s",
            f"messages posted to the channel: {r['channel_posts']}",
        ]
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--step-time", type=float, default=0.05, help="fake seconds per sampler step")
    parser.add_argument("--interval", type=float, default=2.0, help="progress.edit_interval_s")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up waiting after this many seconds"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args.jobs, args.step_time, args.interval, args.timeout))
    print(_table(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "discord_economy.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
