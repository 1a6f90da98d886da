"""Drill: the bot process is killed with SIGKILL mid-run and restarted; no job is lost or run twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bot.jobs import JobStatus
from bot.store import JobStore
from tests.factories import imagine_job
from tests.fakes.comfy_server import FakeComfyUI

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[[backends]]
name = "gpu0"
url = "{url}"

[[models]]
name = "tiny"
checkpoint = "random_sd15_tiny.safetensors"
width = 64
height = 64
steps = 4

[storage]
database = "jobs.db"
output_dir = "out"

[scheduler]
health_interval_s = 0.1
"""


async def _spawn(config: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.drills._worker", str(config),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert await _line(proc) == "ready"
    return proc


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    return raw.decode().strip()


async def test_sigkill_mid_run_and_restart_finishes_each_job_exactly_once(tmp_path: Path) -> None:
    procs: list[asyncio.subprocess.Process] = []
    try:
        await _drill(tmp_path, procs)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _drill(tmp_path: Path, procs: list[asyncio.subprocess.Process]) -> None:
    async with FakeComfyUI(step_time=0.002) as fake:
        config = tmp_path / "config.toml"
        config.write_text(CONFIG.format(url=fake.url), encoding="utf-8")
        store = await JobStore.open(str(tmp_path / "jobs.db"))
        three_each = [
            imagine_job(f"job {g}-{i}", guild=g, user=g * 100 + i) for g in (1, 2) for i in range(3)
        ]
        jobs = await store.enqueue_many(three_each)
        await store.close()

        fake.wait_timeout = 20
        fake.pause()
        first = await _spawn(config)
        procs.append(first)
        await fake.wait_paused()
        await fake.wait_until(lambda: len(fake.pending_ids) == 1)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        fake.resume()  # the prompts the dead bot posted go on running without it

        second = await _spawn(config)
        procs.append(second)
        endings = sorted([await _line(second) for _ in jobs])
        second.send_signal(signal.SIGTERM)
        assert await _line(second) == "stopped"
        assert await asyncio.wait_for(second.wait(), timeout=20) == 0

        assert endings == sorted(f"completed {job.id}" for job in jobs)
        store = await JobStore.open(str(tmp_path / "jobs.db"))
        try:
            finished = [await store.get(job.id) for job in jobs]
        finally:
            await store.close()
        assert all(job is not None and job.status is JobStatus.COMPLETED for job in finished)
        prompt_ids = {job.prompt_id for job in finished if job is not None}
        assert len(fake.received_prompts) == 6  # nothing was generated twice
        assert fake.history_count() == 6
        assert prompt_ids == set(fake.finished_prompt_ids)
        # The first two claims (before the kill) alternated between the guilds.
        by_prompt = {job.prompt_id: job.guild_id for job in finished if job is not None}
        assert [by_prompt[p] for p in fake.executed_prompt_ids][:2] == [1, 2]
