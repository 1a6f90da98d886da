"""One bot process without Discord, for the multi-process benchmarks, and the parent's handle on it.

    python -m bench._bot_process CONFIG

Runs the config's `Services` (on PostgreSQL: the store, the event relay, the lease keeper, the scheduler)
until stdin closes or SIGTERM arrives (a clean stop), or until it is killed. It prints what it does, one
line each, wall-clock time first (`time.time()`; the processes share one host, so their times compare):

    <t> ready <lease holder>
    <t> held <backend>          this process took the backend's lease (polled every 10 ms)
    <t> lost <backend>
    <t> event <Type> <job> [<backend> | <step>/<total>]
                                an event this process published itself (Started, Progress, Completed,
                                ...), not one relayed from another process

`BotProcess` starts one, reads those lines into `records` and waits for the ones a benchmark needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELD_POLL_S = 0.01

CONFIG = """
[[backends]]
{backends}

[[models]]
name = "{model}"
checkpoint = "random_sd15_tiny.safetensors"
width = 64
height = 64
steps = {steps}

[storage]
database = "{database}"
output_dir = "{output_dir}"

[scheduler]
lease_s = {lease_s}
health_interval_s = {health_interval_s}
job_timeout_s = 3600
"""


def write_config(
    path: Path,
    *,
    database: str,
    backend_urls: list[str],
    only: list[int] | None = None,
    model: str,
    steps: int,
    lease_s: float,
    health_interval_s: float = 5.0,
) -> Path:
    """A bot config for `_bot_process`: backends gpu0, gpu1, ... at `backend_urls` (`only`: just those
    indices, same names), one model, PostgreSQL."""
    backends = "\n[[backends]]\n".join(
        f'name = "gpu{index}"\nurl = "{url}"\n'
        for index, url in enumerate(backend_urls)
        if only is None or index in only
    )
    path.write_text(
        CONFIG.format(
            backends=backends,
            model=model,
            steps=steps,
            database=database,
            output_dir=path.parent / "out",
            lease_s=lease_s,
            health_interval_s=health_interval_s,
        ),
        encoding="utf-8",
    )
    return path


# ------------------------------------------------------------------ the child


async def _serve(config_path: str) -> None:
    from bot.config import load_config
    from bot.events import JobEvent, Progress, Started
    from bot.services import Services

    def say(*words: object) -> None:
        sys.stdout.write(f"{time.time():.6f} " + " ".join(map(str, words)) + "\n")
        sys.stdout.flush()

    def own_event(event: JobEvent) -> None:
        extra: tuple[object, ...] = ()
        if isinstance(event, Started):
            extra = (event.backend,)
        elif isinstance(event, Progress):
            extra = (f"{event.step}/{event.total}",)
        say("event", type(event).__name__, event.job_id, *extra)

    services = Services(load_config(config_path, env={}))
    services.bus.add_forwarder(own_event)  # forwarders see this process's events only
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await services.start()
    say("ready", services.lease_holder)

    async def watch_leases() -> None:
        held: dict[str, bool] = {}
        while True:
            for backend in services.scheduler.backends:
                if held.get(backend.name, False) != backend.held:
                    held[backend.name] = backend.held
                    say("held" if backend.held else "lost", backend.name)
            await asyncio.sleep(HELD_POLL_S)

    watcher = asyncio.create_task(watch_leases())
    eof = asyncio.ensure_future(reader.read())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (watcher, eof, stopped):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await services.close()
    say("stopped")


# ------------------------------------------------------------------ the parent's handle


@dataclass(frozen=True)
class Record:
    """One line a bot process printed."""

    t: float
    what: str
    args: tuple[str, ...]


class BotProcess:
    """A `_bot_process` child: its lines, read as they come."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.records: list[Record] = []
        self.holder = ""
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, name: str, config: Path, *, ready_s: float = 60.0) -> BotProcess:
        """Start a bot process on `config` and wait until its services run."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._bot_process", str(config),
            cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        bot = cls(name, proc)
        ready = await bot.wait_for(lambda r: r.what == "ready", limit_s=ready_s)
        bot.holder = ready.args[0]
        return bot

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            t, what, *args = line.decode().split()
            self.records.append(Record(float(t), what, tuple(args)))
            self._changed.set()
        self._changed.set()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def held(self) -> set[str]:
        """The backends this process holds, by its latest lines."""
        state: dict[str, bool] = {}
        for record in self.records:
            if record.what in ("held", "lost"):
                state[record.args[0]] = record.what == "held"
        return {name for name, held in state.items() if held}

    def events(self, kind: str | None = None, job: int | None = None) -> list[Record]:
        """The events this process published itself, of one type and/or one job."""
        return [
            r
            for r in self.records
            if r.what == "event"
            and (kind is None or r.args[0] == kind)
            and (job is None or int(r.args[1]) == job)
        ]

    async def wait_for(self, predicate: Callable[[Record], bool], *, limit_s: float) -> Record:
        """The first line (already read or to come) for which `predicate` holds."""
        seen = 0
        async with asyncio.timeout(limit_s):
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                if self._reader.done():
                    raise RuntimeError(f"bot process {self.name} ended (exit {self.proc.returncode})")
                self._changed.clear()
                await self._changed.wait()

    async def until(self, condition: Callable[[], bool], *, limit_s: float) -> None:
        """Wait until `condition()` holds, checking it after every line of this process and every 0.1 s
        (the condition may depend on other processes' lines)."""
        async with asyncio.timeout(limit_s):
            while not condition():
                if self._reader.done():
                    raise RuntimeError(f"bot process {self.name} ended (exit {self.proc.returncode})")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.1)

    def kill(self) -> float:
        """SIGKILL the process; the wall-clock time just before the signal."""
        at = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        return at

    async def stop(self, limit_s: float = 30.0) -> None:
        """A clean stop (stdin closes), or a kill if it takes longer than `limit_s`."""
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), limit_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def main() -> None:
    """Command-line entry point (the child)."""
    level = os.environ.get("BENCH_BOT_LOG", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(sys.argv[1]))


if __name__ == "__main__":
    main()
