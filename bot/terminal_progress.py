"""The progress line `comfy-imagine generate` draws on a terminal (or one line per ~10 % on a pipe)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from comfy.progress import ProgressSnapshot


class TerminalProgress:
    """A progress line on a terminal: one updating line on a TTY, else one line per ~10 %."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        width: int = 24,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        self._clock = clock
        self._label = ""
        self._started_at = 0.0
        self._last_decile = -1

    def begin(self, label: str) -> None:
        """A new prompt is being followed; it waits in ComfyUI's queue until it starts."""
        self._label = label
        self._started_at = self._clock()
        self._last_decile = -1
        self._write(f"{label}: waiting in ComfyUI's queue", final=not self.tty)

    def running(self) -> None:
        """ComfyUI started the prompt."""
        if self.tty:
            self._write(f"{self._label}: running")

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Show overall progress (step n/N, percent, ETA)."""
        percent = int(snapshot.fraction * 100)
        if self.tty:
            filled = round(self.width * snapshot.fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            self._write(f"{self._label} [{bar}] {self._numbers(snapshot, percent)}")
            return
        decile = percent // 10
        if decile > self._last_decile and snapshot.total_steps:
            self._last_decile = decile
            self._write(f"{self._label}: {self._numbers(snapshot, percent)}", final=True)

    def end(self, text: str) -> None:
        """Close the prompt's line with how it ended."""
        seconds = self._clock() - self._started_at
        self._write(f"{self._label}: {text} ({seconds:.1f} s)", final=True)

    def message(self, text: str) -> None:
        """A line of its own (never mixed into the progress line)."""
        self._write(text, final=True)

    @staticmethod
    def _numbers(snapshot: ProgressSnapshot, percent: int) -> str:
        text = f"step {snapshot.step}/{snapshot.total_steps} {percent:3d}%"
        if snapshot.eta_s is not None and snapshot.fraction < 1:
            text += f" ETA {_duration(snapshot.eta_s)}"
        return text

    def _write(self, text: str, *, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
