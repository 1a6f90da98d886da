"""One fake ComfyUI in a process of its own, for benchmarks that must not share the bot's event loop.

    python -m bench._fake_comfy_process --step-time 0.05

Prints the server's URL on one line once it listens, then serves until stdin closes (the parent exits or
closes the pipe) or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from tests.fakes.comfy_server import FakeComfyUI


async def serve(step_time: float) -> None:
    """Serve until stdin reaches EOF or SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeComfyUI(step_time=step_time) as fake:
        print(fake.url, flush=True)
        eof = asyncio.ensure_future(reader.read())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (eof, stopped):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step-time", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(serve(args.step_time))


if __name__ == "__main__":
    main()
