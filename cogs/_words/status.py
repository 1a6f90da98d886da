"""The lines under a job's headline while it waits or runs: its place in the queue, why it waits, progress."""

from __future__ import annotations

import math
from typing import Final

from bot.reasons import WaitReason

BAR_WIDTH: Final = 20


def waiting_text(reason: WaitReason) -> str:
    """The line under a queued job's status that says why it does not move."""
    if reason is WaitReason.NO_BACKEND:
        return "No image server is reachable right now; your job will start when one is back."
    return "Your job waits for an image server."


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text progress bar with its percentage, e.g. `██████░░░░░░░░░░░░░░ 30%`."""
    fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
    filled = math.floor(fraction * width + 1e-9)
    return f"`{'█' * filled}{'░' * (width - filled)}` {math.floor(fraction * 100 + 1e-9)}%"


def format_eta(seconds: float | None) -> str | None:
    """A short human duration for the time left: `under 1 s`, `42 s`, `3 min 5 s`, `1 h 20 min`."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return None
    if seconds < 1:
        return "under 1 s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def status_text(
    *,
    started: bool = False,
    position: int | None = None,
    waiting: str | None = None,
    step: int = 0,
    total: int = 0,
    fraction: float = 0.0,
    eta_s: float | None = None,
) -> str:
    """The lines under the headline while a job waits (`position` in the queue, `waiting`: why it does not
    move) or runs (`step` of `total`, `fraction` done, `eta_s` left)."""
    if not started:
        if position is None:
            line = "⏳ Queued"
        else:
            line = f"⏳ Queued, position {position} in this server"
        return f"{line}\n{waiting}" if waiting else line
    if total <= 0:
        return "🎨 Starting…"
    parts = [f"Step {min(step, total)}/{total}"]
    eta = format_eta(eta_s)
    if eta is not None and fraction < 1:
        parts.append(f"{eta} left" if eta.startswith("under") else f"about {eta} left")
    return f"{progress_bar(fraction)}\n{' · '.join(parts)}"
