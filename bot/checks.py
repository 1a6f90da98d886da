"""`comfy-imagine check`: is the config complete, and can every ComfyUI backend be reached?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from bot.config import TOKEN_ENV, Config
from comfy.profiles import BackendConfig


@dataclass(slots=True)
class BackendReport:
    """What `check` found out about one backend."""

    name: str
    url: str
    reachable: bool = False
    version: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CheckReport:
    """The outcome of `check`: config problems (exit 2) and backend problems (exit 1)."""

    config_problems: list[str] = field(default_factory=list)
    backends: list[BackendReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when all is well, 2 for an incomplete config, 1 for an unreachable or unfit backend."""
        if self.config_problems:
            return 2
        if any(b.problems for b in self.backends):
            return 1
        return 0

    def lines(self) -> list[str]:
        """Human-readable lines for the terminal."""
        out = [f"config: {p}" for p in self.config_problems]
        for b in self.backends:
            head = f"backend {b.name} ({b.url}): "
            if b.reachable and not b.problems:
                out.append(head + f"ok, ComfyUI {b.version or 'unknown version'}")
            for problem in b.problems:
                out.append(head + problem)
        if self.exit_code == 0:
            out.append("all checks passed")
        return out


async def run_checks(config: Config, *, session: aiohttp.ClientSession | None = None) -> CheckReport:
    """Check the config for what it lacks and reach every backend concurrently."""
    report = CheckReport()
    if config.token is None:
        report.config_problems.append(
            f"discord.token is not set: put the bot token in the config file or in the {TOKEN_ENV} "
            "environment variable"
        )
    owned = session is None
    session = session or aiohttp.ClientSession()
    try:
        report.backends = list(await asyncio.gather(*(_check_backend(session, b) for b in config.backends)))
    finally:
        if owned:
            await session.close()
    return report


async def _check_backend(session: aiohttp.ClientSession, backend: BackendConfig) -> BackendReport:
    report = BackendReport(name=backend.name, url=backend.base_url)
    timeout = aiohttp.ClientTimeout(total=backend.timeout_s)
    try:
        async with session.get(backend.base_url + "/system_stats", timeout=timeout) as response:
            if response.status != 200:
                report.problems.append(f"unreachable: /system_stats answered HTTP {response.status}")
                return report
            stats = await response.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        report.problems.append(
            f"unreachable: cannot connect ({exc.os_error.strerror or exc.os_error}); is ComfyUI running there? "
            "(see backends[].url)"
        )
        return report
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = f"timed out after {backend.timeout_s:g} s" if isinstance(exc, TimeoutError) else str(exc)
        report.problems.append(f"unreachable: {reason or type(exc).__name__}")
        return report
    report.reachable = True
    system = stats.get("system") if isinstance(stats, dict) else None
    report.version = system.get("comfyui_version") if isinstance(system, dict) else None
    return report
