"""The persistent buttons under job messages: custom_ids carry the job and action, SQLite holds the rest.

Every button is a `DynamicItem`, so it works after a restart and months later: nothing about it lives in
memory. Its callback takes the services from `interaction.client` (the ImagineBot), never from a cog.
custom_ids look like `ci:<action>:123:2` (the action of comfy.actions on image 2 of job 123; U2 on a grid),
`ci:<action>:123` (under a single image, or the reroll of a grid), `ci:cancel:123` and `ci:info:123`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.imagine_bot import ImagineBot, JobMessages
from cogs._errors import report_error, send_ephemeral
from cogs._messages import BUTTONS_GUILD_ONLY, Where, cancelled_text, job_info_text, queued_text
from cogs._permissions import is_admin
from cogs._render import NO_MENTIONS
from comfy.actions import ACTIONS, Action, action_named

log = logging.getLogger(__name__)

PREFIX = "ci"
CANCEL = "cancel"
INFO = "info"
_JOB = r"(?P<job>\d{1,19})"
_ACTIONS = "|".join(re.escape(action.name) for action in ACTIONS)
FOLLOW_UP_TEMPLATE = rf"{PREFIX}:(?P<action>{_ACTIONS}):{_JOB}(?::(?P<index>[1-9]))?"
CANCEL_TEMPLATE = rf"{PREFIX}:{CANCEL}:{_JOB}"
INFO_TEMPLATE = rf"{PREFIX}:{INFO}:{_JOB}"
MAX_CUSTOM_ID = 100
INFO_ROW = 1  # the Info button's row under a single image, after the actions of that row


class ExtensionNotLoaded(RuntimeError):
    """A button was pressed while the imagine extension (which shows jobs) is not loaded."""


def _job_messages(bot: ImagineBot) -> JobMessages:
    if bot.job_messages is None:
        raise ExtensionNotLoaded("the imagine extension is not loaded")
    return bot.job_messages


def custom_id(action: str, job_id: int, number: int | None = None) -> str:
    """The custom_id of a button: action, job id and (for grid buttons) the 1-based image number."""
    value = f"{PREFIX}:{action}:{job_id}" + (f":{number}" if number is not None else "")
    if len(value) > MAX_CUSTOM_ID:
        raise ValueError(f"custom_id {value!r} is longer than {MAX_CUSTOM_ID} characters")
    return value


def follow_up_job(value: str) -> int | None:
    """The job a follow-up button's custom_id acts on (U, V, reroll, zoom, ...); None for any other id."""
    match = re.fullmatch(FOLLOW_UP_TEMPLATE, value)
    return int(match["job"]) if match is not None else None


class FollowUpButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FOLLOW_UP_TEMPLATE):
    """U1-U4, V1-V4, 🔄 and the buttons under an upscale: each queues a new job owned by the presser."""

    def __init__(
        self,
        action: Action,
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
                label=label,
                emoji=emoji,
                style=style,
                row=row,
                custom_id=custom_id(action.name, job_id, number),
            )
        )
        self.action = action
        self.job_id = job_id
        self.number = number

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> FollowUpButton:
        """Rebuild the button from its custom_id (after a restart too)."""
        action = action_named(match["action"])
        assert action is not None  # the template matches the table's names only
        number = int(match["index"]) if match["index"] else None
        return cls(action, int(match["job"]), number)

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Queue the follow-up, post its status message in reply, and tell the presser (only them)."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            if interaction.guild_id is None or interaction.channel_id is None:
                await send_ephemeral(interaction, BUTTONS_GUILD_ONLY)
                return
            bot = interaction.client
            messages = _job_messages(bot)
            messages.note_upload_limit(interaction.guild_id, interaction.filesize_limit)
            queued = await bot.services.jobs.follow_up(
                self.job_id,
                (self.number or 1) - 1,
                self.action.name,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                user_id=interaction.user.id,
            )
            posted = []
            for item in queued:
                message_id = await messages.post_status(item, reply_to=interaction.message)
                posted.append(message_id is not None)
            await interaction.followup.send(queued_text(self.action, self.number, queued[0]), ephemeral=True)
            if not all(posted):
                # The bot cannot post in this channel: show the status through the interaction instead.
                for item, ok in zip(queued, posted, strict=True):
                    if not ok:
                        await messages.post_status_followup(item, interaction)
        except Exception as exc:
            await report_error(interaction, exc, Where.FOLLOW_UP)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CANCEL_TEMPLATE):
    """Cancel a waiting or running job: its owner or an admin only."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.danger, custom_id=custom_id(CANCEL, job_id)
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CancelButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["job"]))

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Cancel the job if the presser may; tell them either way (only them)."""
        try:
            if interaction.guild_id is None:
                await send_ephemeral(interaction, BUTTONS_GUILD_ONLY)
                return
            bot = interaction.client
            done = await bot.services.jobs.cancel(
                self.job_id,
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
                admin=is_admin(interaction.user, bot.config.discord.admin_role_ids),
            )
            text = cancelled_text(done, where=Where.CANCEL_BUTTON, actor_id=interaction.user.id)
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            await report_error(interaction, exc, Where.CANCEL_BUTTON)


class InfoButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=INFO_TEMPLATE):
    """Seed, parameters, model, backend and a link to the parent, for the presser only."""

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label="Info",
                emoji="ℹ️",
                style=discord.ButtonStyle.secondary,
                row=row,
                custom_id=custom_id(INFO, job_id),
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> InfoButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["job"]))

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Answer with the job's details, ephemerally."""
        try:
            if interaction.guild_id is None:
                await send_ephemeral(interaction, BUTTONS_GUILD_ONLY)
                return
            info = await interaction.client.services.jobs.job_info(self.job_id, interaction.guild_id)
            await interaction.response.send_message(
                job_info_text(info), ephemeral=True, allowed_mentions=NO_MENTIONS
            )
        except Exception as exc:
            await report_error(interaction, exc, Where.INFO)


BUTTON_CLASSES: tuple[type[discord.ui.DynamicItem[Any]], ...] = (FollowUpButton, CancelButton, InfoButton)


def cancel_view(job_id: int) -> discord.ui.View:
    """The Cancel button under a status message."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def grid_view(job_id: int, count: int = 4) -> discord.ui.View:
    """The buttons under a grid (U1-U4 and 🔄, then V1-V4): the actions with a `grid_row`."""
    view = discord.ui.View(timeout=None)
    count = max(1, min(4, count))
    for row in sorted({a.grid_row for a in ACTIONS if a.grid_row is not None}):
        for action in (a for a in ACTIONS if a.grid_row == row):
            if action.grid_label is None:
                view.add_item(FollowUpButton(action, job_id, emoji=action.emoji, row=row))
                continue
            for number in range(1, count + 1):
                label = f"{action.grid_label}{number}"
                view.add_item(FollowUpButton(action, job_id, number, label=label, row=row))
    return view


def upscale_view(job_id: int) -> discord.ui.View:
    """The buttons under a single (upscaled) image: the actions with a `row`, and Info."""
    view = discord.ui.View(timeout=None)
    for row in sorted({a.row for a in ACTIONS if a.row is not None} | {INFO_ROW}):
        for action in (a for a in ACTIONS if a.row == row):
            view.add_item(FollowUpButton(action, job_id, label=action.label, emoji=action.emoji, row=row))
        if row == INFO_ROW:
            view.add_item(InfoButton(job_id, row=row))
    return view
