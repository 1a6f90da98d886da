"""Run the real `comfy-imagine` command line in a subprocess, as an operator would."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def run_cli(
    *args: str,
    env_extra: dict[str, str] | None = None,
    started: Callable[[asyncio.subprocess.Process], Awaitable[None]] | None = None,
) -> tuple[int, str, str]:
    """`python -m bot ARGS` without DISCORD_TOKEN (plus `env_extra`); returns (exit code, stdout, stderr).

    `started` runs once the process exists (for example, to signal it) before its output is collected.
    """
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env.update(env_extra or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if started is not None:
        await started(proc)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
