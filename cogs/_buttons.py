"""The persistent buttons under job messages: custom_ids carry the job and action, SQLite holds the rest.

Every button is a `DynamicItem`, so it works after a restart and months later: nothing about it lives in
memory. custom_ids look like `ci:upscale_2x:123:2` (U2 of job 123), `ci:reroll:123`, `ci:cancel:123`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.imagine_service import ACTION_NAMES, REROLL, UserError
from cogs._context import context_of
from cogs._errors import report_error
from cogs._permissions import is_admin

log = logging.getLogger(__name__)

PREFIX = "ci"
_JOB = r"(?P<job>\d{1,19})"
FOLLOW_UP_TEMPLATE = (
    rf"{PREFIX}:(?P<action>upscale_2x|vary_strong|vary_subtle|zoom_1\.5|zoom_2|pan_left|pan_right|pan_up|pan_down"
    rf"|{REROLL}):{_JOB}(?::(?P<index>[1-9]))?"
)
CANCEL_TEMPLATE = rf"{PREFIX}:cancel:{_JOB}"
INFO_TEMPLATE = rf"{PREFIX}:info:{_JOB}"
MAX_CUSTOM_ID = 100


def custom_id(action: str, job_id: int, number: int | None = None) -> str:
    """The custom_id of a button: action, job id and (for grid buttons) the 1-based image number."""
    value = f"{PREFIX}:{action}:{job_id}" + (f":{number}" if number is not None else "")
    if len(value) > MAX_CUSTOM_ID:
        raise ValueError(f"custom_id {value!r} is longer than {MAX_CUSTOM_ID} characters")
    return value


class FollowUpButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FOLLOW_UP_TEMPLATE):
    """U1-U4, V1-V4, 🔄 and the buttons under an upscale: each queues a new job owned by the presser."""

    def __init__(
        self,
        action: str,
        job_id: int,
        number: int | None = None,
        *,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, row=row, custom_id=custom_id(action, job_id, number)
            )
        )
        self.action = action
        self.job_id = job_id
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> FollowUpButton:
        """Rebuild the button from its custom_id (after a restart too)."""
        number = int(match["index"]) if match["index"] else None
        return cls(match["action"], int(match["job"]), number)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Queue the follow-up, post its status message in reply, and tell the presser (only them)."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            if interaction.guild_id is None or interaction.channel_id is None:
                raise UserError("These buttons only work in a server.")
            context = context_of(interaction.client)
            context.presenter.note_upload_limit(interaction.guild_id, interaction.filesize_limit)
            queued = await context.service.follow_up(
                self.job_id,
                (self.number or 1) - 1,
                self.action,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                user_id=interaction.user.id,
            )
            posted = []
            for item in queued:
                message_id = await context.presenter.post_status(item, reply_to=interaction.message)
                posted.append(message_id is not None)
            job = queued[0].job
            where = f", position {queued[0].position} in this server" if queued[0].position else ""
            await interaction.followup.send(
                f"Queued: {ACTION_NAMES[self.action]}"
                + (f" of image {self.number}" if self.number else "")
                + f" (job #{job.id}{where}).",
                ephemeral=True,
            )
            if not all(posted):
                # The bot cannot post in this channel: show the status through the interaction instead.
                for item, ok in zip(queued, posted, strict=True):
                    if not ok:
                        await context.presenter.post_status_followup(item, interaction)
        except Exception as exc:
            await report_error(interaction, exc)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CANCEL_TEMPLATE):
    """Cancel a waiting or running job: its owner or an admin only."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.danger, custom_id=custom_id("cancel", job_id)
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> CancelButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Cancel the job if the presser may; tell them either way (only them)."""
        try:
            if interaction.guild_id is None:
                raise UserError("These buttons only work in a server.")
            context = context_of(interaction.client)
            text = await context.service.cancel(
                self.job_id,
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
                is_admin=is_admin(interaction.user, context.admin_role_ids),
            )
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        except Exception as exc:
            await report_error(interaction, exc)


class InfoButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=INFO_TEMPLATE):
    """Seed, parameters, model, backend and a link to the parent, for the presser only."""

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label="Info",
                emoji="ℹ️",
                style=discord.ButtonStyle.secondary,
                row=row,
                custom_id=custom_id("info", job_id),
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> InfoButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Answer with the job's details, ephemerally."""
        try:
            if interaction.guild_id is None:
                raise UserError("These buttons only work in a server.")
            text = await context_of(interaction.client).service.job_info(self.job_id, interaction.guild_id)
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        except Exception as exc:
            await report_error(interaction, exc)


BUTTON_CLASSES: tuple[type[discord.ui.DynamicItem[Any]], ...] = (FollowUpButton, CancelButton, InfoButton)


def cancel_view(job_id: int) -> discord.ui.View:
    """The Cancel button under a status message."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def grid_view(job_id: int, count: int = 4) -> discord.ui.View:
    """U1-U4 and 🔄 on the first row, V1-V4 on the second."""
    view = discord.ui.View(timeout=None)
    count = max(1, min(4, count))
    for number in range(1, count + 1):
        view.add_item(FollowUpButton("upscale_2x", job_id, number, label=f"U{number}", row=0))
    view.add_item(FollowUpButton(REROLL, job_id, emoji="🔄", row=0))
    for number in range(1, count + 1):
        view.add_item(FollowUpButton("vary_strong", job_id, number, label=f"V{number}", row=1))
    return view


def upscale_view(job_id: int) -> discord.ui.View:
    """The buttons under a single (upscaled) image: vary, upscale again, zoom out, pan, info."""
    view = discord.ui.View(timeout=None)
    for action, label, emoji in (
        ("vary_strong", "Vary (Strong)", "🪄"),
        ("vary_subtle", "Vary (Subtle)", "🪄"),
        ("upscale_2x", "Upscale 2x", "🔍"),
    ):
        view.add_item(FollowUpButton(action, job_id, label=label, emoji=emoji, row=0))
    for action, label in (("zoom_1.5", "Zoom Out 1.5x"), ("zoom_2", "Zoom Out 2x")):
        view.add_item(FollowUpButton(action, job_id, label=label, emoji="🔎", row=1))
    view.add_item(InfoButton(job_id, row=1))
    for action, emoji in (("pan_left", "⬅️"), ("pan_right", "➡️"), ("pan_up", "⬆️"), ("pan_down", "⬇️")):
        view.add_item(FollowUpButton(action, job_id, emoji=emoji, row=2))
    return view
