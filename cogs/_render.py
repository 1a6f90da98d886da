"""How a job looks in Discord: the status embed with its preview, the embeds of its end, its attachments'
names. The words come from cogs._words."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bot.jobs import Job
from cogs._words.failures import CANCELLED_TEXT, FAILED_WITHOUT_REASON, failed_text
from cogs._words.status import status_text

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
    def text(self) -> str:
        """The lines under the headline (cogs._words.status.status_text)."""
        return status_text(
            started=self.started,
            position=self.position,
            waiting=self.waiting,
            step=self.step,
            total=self.total,
            fraction=self.fraction,
            eta_s=self.eta_s,
        )

    @property
    def preview_name(self) -> str:
        """The file name of the preview attachment (its extension follows its type)."""
        return PREVIEW_NAME.get(self.preview_mime or "", "preview.jpg")


def status_embed(state: StatusState) -> discord.Embed:
    """The embed of a status message: where the job is, and the latest preview when there is one."""
    colour = PROGRESS_COLOUR if state.started else QUEUED_COLOUR
    embed = discord.Embed(description=state.text, colour=colour)
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
