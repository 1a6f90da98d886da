"""Drill: a second bot process on the same SQLite file refuses to start (exit 1) and says why."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.comfy_server import FakeComfyUI
from tests.fakes.discord_server import FakeDiscord

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[discord]
token = "{token}"

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
"""


async def test_a_second_process_on_one_sqlite_file_exits_1_naming_the_file_and_postgresql(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with FakeComfyUI(step_time=0.002) as comfy, FakeDiscord() as discord:
        config = tmp_path / "config.toml"
        config.write_text(CONFIG.format(token=discord.token, url=comfy.url), encoding="utf-8")
        first = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.drills._worker", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert first.stdout is not None
            assert (await asyncio.wait_for(first.stdout.readline(), timeout=20)).strip() == b"ready"
            second = await asyncio.create_subprocess_exec(
                *discord.pointed_command("bot", "run", "--config", str(config)),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(second.communicate(), timeout=30)
            assert second.returncode == 1
            text = stderr.decode()
            assert "another comfy-imagine process" in text
            assert f"pid {first.pid}" in text
            assert str(tmp_path / "jobs.db") in text
            assert "PostgreSQL" in text
            assert first.returncode is None  # the first one runs on, untouched
        finally:
            first.kill()
            await first.wait()
