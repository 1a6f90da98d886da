"""Run a module with discord.py pointed at a fake Discord: a bot process of a drill, against the test's fake.

    python -m tests.fakes.run_pointed http://127.0.0.1:PORT bot run --config shard1.toml

`FakeDiscord.pointed_command("bot", "run", "--config", path)` builds this argv.
"""

from __future__ import annotations

import runpy
import sys

from tests.fakes.discord_server import discord_py_pointed_at


def main(argv: list[str]) -> None:
    """Patch discord.py's endpoints, then run MODULE as `__main__` with ARGS as its sys.argv."""
    if len(argv) < 2:
        raise SystemExit("usage: python -m tests.fakes.run_pointed HTTP_BASE MODULE [ARGS...]")
    http_base, module, *args = argv
    sys.argv = [module, *args]
    with discord_py_pointed_at(http_base):
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
