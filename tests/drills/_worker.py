"""A bot process without Discord, for drills: runs the services until killed, printing how each job ends.

    python -m tests.drills._worker CONFIG
prints `ready`, then `completed <job id>` / `failed <job id>` / `cancelled <job id>` lines; SIGTERM stops it
gracefully (jobs in flight are handed to the next start).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bot.config import load_config
from bot.events import Cancelled, Completed, Failed
from bot.services import Services


async def _main(config_path: str) -> None:
    services = Services(load_config(config_path, env={}))
    inbox = services.bus.subscribe()  # before start(): re-attached jobs may finish at once
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await services.start()
    print("ready", flush=True)

    async def report() -> None:
        while True:
            event = await inbox.get()
            if isinstance(event, Completed | Failed | Cancelled):
                print(type(event).__name__.lower(), event.job_id, flush=True)

    reporter = asyncio.create_task(report())
    await stop.wait()
    reporter.cancel()
    await services.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
