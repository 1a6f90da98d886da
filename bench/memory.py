"""Benchmark: peak memory (RSS) of the bot process with 10,000 waiting jobs and 4 backends.

    python -m bench.memory                        # 10,000 jobs over 100 guilds, 4 fake ComfyUI, 60 s of work

This process runs the fakes (4 ComfyUI, Discord); the bot runs alone in a child process
(`python -m bench.memory --child ...`), so only the bot's memory is counted: the real ImagineBot with
its Services and Scheduler, logged into the fake Discord. The child fills its store with the waiting
jobs (over 100 guilds), then this process sends /imagine commands and lets the backends work (the
images are downloaded, saved, gridded and posted) for `--seconds`; the child then reports its peak RSS
(VmHWM from /proc/self/status). Prints a table and writes JSON to bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
GUILDS = 100


def _status_kb() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in kB."""
    values = {}
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _say(kind: str, **values: Any) -> None:
    print(json.dumps({"kind": kind, **values}), flush=True)


async def child(config_path: str, http_base: str, jobs: int, guild_id: int, channel_id: int) -> None:
    """The measured bot: start it against the fake Discord at `http_base`, fill the queue, report memory."""
    import discord.gateway
    import discord.http
    import yarl

    from bench._harness import waiting_jobs
    from bot.config import load_config
    from bot.imagine_bot import ImagineBot
    from bot.services import Services

    at_import = _status_kb()
    discord.http.Route.BASE = http_base + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        http_base.replace("http://", "ws://", 1) + "/"
    )
    config = load_config(config_path, env={})
    bot = ImagineBot(config=config, services=Services(config))
    token = config.discord.token
    assert token is not None
    task = asyncio.create_task(bot.start(token.get_secret_value()))
    # Interactions are handled once the guild is known and the services run; on_ready comes 2 s later.
    while not (bot.services.started and bot.get_guild(guild_id) is not None):
        if task.done():
            task.result()
            raise RuntimeError("the bot stopped during start-up")
        await asyncio.sleep(0.05)
    at_ready = _status_kb()
    guild_ids = [guild_id, *range(1, GUILDS)]
    filled = await bot.services.store.enqueue_many(
        waiting_jobs(jobs, config.models[0], guild_ids, channel_id)
    )
    bot.services.scheduler.wake()
    _say("ready", jobs=len(filled), at_import=at_import, at_ready=at_ready, after_fill=_status_kb())
    await asyncio.to_thread(sys.stdin.readline)
    waiting = sum([await bot.services.store.count_queued_for_guild(g) for g in guild_ids])
    cog = next(iter(bot.cogs.values()), None)
    trackers = len(getattr(getattr(cog, "presenter", None), "_trackers", ()))  # diagnostic only
    _say("measured", waiting=waiting, trackers=trackers, tasks=len(asyncio.all_tasks()), at_end=_status_kb())
    await bot.close()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def parent(jobs: int, seconds: float, commands: int, step_time: float) -> dict[str, Any]:
    """Run the fakes here, the bot in a child process, and collect the child's memory report."""
    from bench._harness import NO_LIMITS
    from tests.e2e import write_e2e_config
    from tests.fakes.comfy_server import FakeComfyUI
    from tests.fakes.discord_server import FakeDiscord

    with tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as stack:
            fakes = [await stack.enter_async_context(FakeComfyUI(step_time=step_time)) for _ in range(4)]
            fake = await stack.enter_async_context(FakeDiscord())
            path = write_e2e_config(Path(folder), fake.token, [f.url for f in fakes], NO_LIMITS)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.memory",
                "--child",
                str(path),
                fake.http_base,
                str(jobs),
                str(fake.guild.id),
                str(fake.channel.id),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdin is not None and process.stdout is not None
            try:
                ready = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=120))
                for index in range(commands):
                    handle = await fake.slash_command("imagine", {"prompt": f"a fox number {index}"})
                    await handle.response(timeout=10)
                await asyncio.sleep(seconds)  # let the backends work: memory grows with what runs
                process.stdin.write(b"measure\n")
                await process.stdin.drain()
                measured = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=60))
                await asyncio.wait_for(process.wait(), timeout=30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            completed = sum(len(f.finished_prompt_ids) for f in fakes)
    return {
        "jobs_filled": ready["jobs"],
        "backends": 4,
        "commands": commands,
        "seconds": seconds,
        "prompts_finished": completed,
        "waiting_at_end": measured["waiting"],
        "presenter_trackers_at_end": measured["trackers"],
        "asyncio_tasks_at_end": measured["tasks"],
        "rss_mb_after_import": ready["at_import"]["VmRSS"] / 1024,
        "rss_mb_when_ready": ready["at_ready"]["VmRSS"] / 1024,
        "rss_mb_after_fill": ready["after_fill"]["VmRSS"] / 1024,
        "rss_mb_at_end": measured["at_end"]["VmRSS"] / 1024,
        "peak_rss_mb": measured["at_end"]["VmHWM"] / 1024,
    }


def _table(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"bot process, {r['jobs_filled']} jobs filled over {GUILDS} guilds, {r['backends']} fake backends, "
            f"{r['commands']} /imagine, {r['seconds']:.0f} s of work ({r['prompts_finished']} prompts finished, "
            f"{r['waiting_at_end']} still waiting); at the end {r['presenter_trackers_at_end']} presenter "
            f"trackers, {r['asyncio_tasks_at_end']} asyncio tasks",
            "stage | RSS MB",
            f"after imports | {r['rss_mb_after_import']:.1f}",
            f"logged in, services started | {r['rss_mb_when_ready']:.1f}",
            f"after filling the queue | {r['rss_mb_after_fill']:.1f}",
            f"at the end | {r['rss_mb_at_end']:.1f}",
            f"peak (VmHWM) | {r['peak_rss_mb']:.1f}",
        ]
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="how long the backends work before measuring"
    )
    parser.add_argument("--commands", type=int, default=20, help="/imagine commands sent after the fill")
    parser.add_argument("--step-time", type=float, default=0.05, help="fake seconds per sampler step")
    parser.add_argument("--child", nargs=5, metavar=("CONFIG", "HTTP_BASE", "JOBS", "GUILD", "CHANNEL"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.child:
        config, base, jobs, guild, channel = args.child
        asyncio.run(child(config, base, int(jobs), int(guild), int(channel)))
        return
    result = asyncio.run(parent(args.jobs, args.seconds, args.commands, args.step_time))
    print(_table(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
