"""How a job looks in Discord: the headline, the progress bar, the status embed and the result captions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import discord

from bot.jobs import Job, JobKind
from cogs._failure_text import CANCELLED_TEXT, FAILED_WITHOUT_REASON, failed_text
from comfy.actions import REROLL, action_named
from comfy.params import format_request, request_from_json

BAR_WIDTH = 20
MAX_SHOWN_PROMPT = 1500  # characters of the prompt in a headline (a message holds 2000)
PROGRESS_COLOUR = discord.Colour.blurple()
QUEUED_COLOUR = discord.Colour.light_grey()
FAILED_COLOUR = discord.Colour.red()
CANCELLED_COLOUR = discord.Colour.dark_grey()
PREVIEW_NAME = {"image/png": "preview.png", "image/webp": "preview.webp"}
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True, slots=True)
class StatusState:
    """What the status message of a job still waiting or running shows."""

    position: int | None = None
    waiting: str | None = None
    started: bool = False
    fraction: float = 0.0
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    preview: bytes | None = None
    preview_mime: str | None = None

    @property
    def preview_name(self) -> str:
        """The file name of the preview attachment (its extension follows its type)."""
        return PREVIEW_NAME.get(self.preview_mime or "", "preview.jpg")


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


def status_text(state: StatusState) -> str:
    """The lines under the headline while a job waits or runs."""
    if not state.started:
        if state.position is None:
            line = "⏳ Queued"
        else:
            line = f"⏳ Queued, position {state.position} in this server"
        return f"{line}\n{state.waiting}" if state.waiting else line
    if state.total <= 0:
        return "🎨 Starting…"
    parts = [f"Step {min(state.step, state.total)}/{state.total}"]
    eta = format_eta(state.eta_s)
    if eta is not None and state.fraction < 1:
        parts.append(f"{eta} left" if eta.startswith("under") else f"about {eta} left")
    return f"{progress_bar(state.fraction)}\n{' · '.join(parts)}"


def what_it_is(job: Job) -> str | None:
    """The follow-up a job is, for its headline (`Upscale (2x) of image 2`); None for a fresh prompt."""
    if job.kind is JobKind.REROLL:
        return REROLL.title
    if job.kind is JobKind.BLEND:
        return f"Blend of {len(job.blend_images)} images"
    if job.action is None:
        return "Image prompt" if job.kind is JobKind.IMG2IMG else None
    action = action_named(job.action)
    if action is None:
        return job.action
    if job.parent_index is not None and action.names_image:
        return f"{action.title} of image {job.parent_index + 1}"
    return action.title


def shown_prompt(job: Job) -> str:
    """The job's prompt with its parameters and seed, as a member can paste it again."""
    try:
        text = format_request(request_from_json(job.request_json))
    except (ValueError, TypeError, KeyError):
        text = job.prompt
    if len(text) > MAX_SHOWN_PROMPT:
        text = text[: MAX_SHOWN_PROMPT - 1] + "…"
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def headline(job: Job) -> str:
    """`**prompt --seed 7** - <@user> (Upscale (2x) of image 2)`: the first line of every job message."""
    line = f"**{shown_prompt(job)}** - <@{job.user_id}>"
    what = what_it_is(job)
    return f"{line} ({what})" if what else line


def status_embed(state: StatusState) -> discord.Embed:
    """The embed of a status message: where the job is, and the latest preview when there is one."""
    colour = PROGRESS_COLOUR if state.started else QUEUED_COLOUR
    embed = discord.Embed(description=status_text(state), colour=colour)
    if state.preview is not None:
        embed.set_image(url=f"attachment://{state.preview_name}")
    return embed


def failed_embed(reason: str) -> discord.Embed:
    """The embed of a job that failed, with the reason."""
    reason = reason.strip() or FAILED_WITHOUT_REASON
    return discord.Embed(description=failed_text(reason[:3900]), colour=FAILED_COLOUR)


def cancelled_embed() -> discord.Embed:
    """The embed of a cancelled job."""
    return discord.Embed(description=CANCELLED_TEXT, colour=CANCELLED_COLOUR)


def result_filename(job: Job, count: int, extension: str) -> str:
    """The attachment name of a job's result: the grid or the single image."""
    return f"imagine_{job.id}_grid.{extension}" if count > 1 else f"imagine_{job.id}.{extension}"
