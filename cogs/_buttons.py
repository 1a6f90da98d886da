"""The persistent buttons under job messages: custom_ids carry the job and action, SQLite holds the rest.

Every button is a `DynamicItem`, so it works after a restart and months later: nothing about it lives in
memory. Its callback takes the services from `interaction.client` (the ImagineBot), never from a cog.
custom_ids look like `ci:<action>:123:2` (the action of comfy.actions on image 2 of job 123; U2 on a grid),
`ci:<action>:123` (under a single image, or the reroll of a grid), `ci:cancel:123` and `ci:info:123`.

A follow-up that asks for its prompt first (Remix on, or Custom Zoom) opens a modal whose custom_id is the
button's with `prompt` after the prefix, `ci:prompt:<action>:123[:2]`; its one text input is `prompt`.
discord.py keeps modals in memory only, so the bot never hands it the modal (it is sent already stopped):
`submit_prompt_modal`, called for every interaction, answers the submission from the custom_id alone, in
this process or one started after the modal was opened.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.imagine_bot import ImagineBot, JobMessages
from cogs._errors import report_error, send_ephemeral
from cogs._permissions import is_admin
from cogs._render import NO_MENTIONS
from cogs._words.buttons import (
    CANCEL_LABEL,
    CUSTOM_ZOOM_HINT,
    INFO_LABEL,
    PROMPT_LABEL,
    REMIX_HINT,
    cancelled_text,
    prompt_modal_title,
    queued_text,
)
from cogs._words.refusals import BUTTONS_GUILD_ONLY, Where
from cogs._words.results import job_info_text
from comfy.actions import ACTIONS, Action, action_named

log = logging.getLogger(__name__)

PREFIX = "ci"
CANCEL = "cancel"
INFO = "info"
PROMPT = "prompt"  # a follow-up's prompt modal, and its text input
_JOB = r"(?P<job>\d{1,19})"
_ACTIONS = "|".join(re.escape(action.name) for action in ACTIONS)
FOLLOW_UP_TEMPLATE = rf"{PREFIX}:(?P<action>{_ACTIONS}):{_JOB}(?::(?P<index>[1-9]))?"
PROMPT_MODAL_TEMPLATE = rf"{PREFIX}:{PROMPT}:(?P<action>{_ACTIONS}):{_JOB}(?::(?P<index>[1-9]))?"
CANCEL_TEMPLATE = rf"{PREFIX}:{CANCEL}:{_JOB}"
INFO_TEMPLATE = rf"{PREFIX}:{INFO}:{_JOB}"
MAX_CUSTOM_ID = 100
MAX_TEXT_INPUT = 4000  # Discord's limit for a text input's value
_PROMPT_MODAL = re.compile(PROMPT_MODAL_TEMPLATE)
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
    """U1-U4, V1-V4, 🔄 and the buttons under an upscale: each queues a new job owned by the presser,
    some after asking for its prompt (`prompt_modal`)."""

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
        # With Remix on (or for Custom Zoom) it first asks for the prompt; the modal's submission queues it.
        try:
            if interaction.guild_id is None or interaction.channel_id is None:
                await send_ephemeral(interaction, BUTTONS_GUILD_ONLY)
                return
            if self.action.remixes or self.action.zoom_from_prompt:
                prompt = await interaction.client.services.jobs.follow_up_prompt(
                    self.job_id, self.action.name, guild_id=interaction.guild_id, user_id=interaction.user.id
                )
                if prompt is not None:
                    modal = prompt_modal(self.action, self.job_id, self.number, prompt)
                    await interaction.response.send_modal(modal)
                    return
            await _start_follow_up(interaction, self.action, self.job_id, self.number)
        except Exception as exc:
            await report_error(interaction, exc, Where.FOLLOW_UP)


async def _start_follow_up(
    interaction: discord.Interaction[ImagineBot],
    action: Action,
    job_id: int,
    number: int | None,
    prompt: str | None = None,
) -> None:
    """Queue the follow-up, post its status message in reply, and tell the presser (only them)."""
    assert interaction.guild_id is not None and interaction.channel_id is not None
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = interaction.client
    messages = _job_messages(bot)
    messages.note_upload_limit(interaction.guild_id, interaction.filesize_limit)
    queued = await bot.services.jobs.follow_up(
        job_id,
        (number or 1) - 1,
        action.name,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        prompt=prompt,
    )
    posted = []
    for item in queued:
        message_id = await messages.post_status(item, reply_to=interaction.message)
        posted.append(message_id is not None)
    await interaction.followup.send(queued_text(action, number, queued[0]), ephemeral=True)
    if not all(posted):
        # The bot cannot post in this channel: show the status through the interaction instead.
        for item, ok in zip(queued, posted, strict=True):
            if not ok:
                await messages.post_status_followup(item, interaction)


def prompt_modal(action: Action, job_id: int, number: int | None, prompt: str) -> discord.ui.Modal:
    """The modal that asks for a follow-up's prompt, prefilled; already stopped, so discord.py does not
    keep it (`submit_prompt_modal` answers it, see the module docstring)."""
    modal = discord.ui.Modal(
        title=prompt_modal_title(action, number),
        custom_id=custom_id(f"{PROMPT}:{action.name}", job_id, number),
    )
    text: discord.ui.TextInput[discord.ui.Modal] = discord.ui.TextInput(
        style=discord.TextStyle.paragraph,
        default=prompt[:MAX_TEXT_INPUT],
        max_length=MAX_TEXT_INPUT,
        custom_id=PROMPT,
    )
    hint = CUSTOM_ZOOM_HINT if action.zoom_from_prompt else REMIX_HINT
    modal.add_item(discord.ui.Label(text=PROMPT_LABEL, description=hint, component=text))
    modal.stop()
    return modal


async def submit_prompt_modal(interaction: discord.Interaction[ImagineBot]) -> bool:
    """Queue the follow-up of a submitted prompt modal (`ci:prompt:...`); False for any other interaction.

    A refused prompt gets the refusal /imagine would give, with the submitted text quoted under it.
    """
    if interaction.type is not discord.InteractionType.modal_submit:
        return False
    data: Any = interaction.data or {}
    match = _PROMPT_MODAL.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return False
    action = action_named(match["action"])
    assert action is not None  # the template matches the table's names only
    number = int(match["index"]) if match["index"] else None
    prompt = _input_value(data.get("components") or [], PROMPT) or ""
    try:
        if interaction.guild_id is None or interaction.channel_id is None:
            await send_ephemeral(interaction, BUTTONS_GUILD_ONLY)
            return True
        await _start_follow_up(interaction, action, int(match["job"]), number, prompt)
    except Exception as exc:
        await report_error(interaction, exc, Where.FOLLOW_UP, quote=prompt)
    return True


def _input_value(components: list[Any], wanted: str) -> str | None:
    """The value a modal submission carries for the text input `wanted` (in rows, or in labels)."""
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == wanted and isinstance(component.get("value"), str):
            return str(component["value"])
        children = [*(component.get("components") or []), *filter(None, [component.get("component")])]
        found = _input_value(children, wanted)
        if found is not None:
            return found
    return None


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CANCEL_TEMPLATE):
    """Cancel a waiting or running job: its owner or an admin only."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=CANCEL_LABEL, style=discord.ButtonStyle.danger, custom_id=custom_id(CANCEL, job_id)
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
                label=INFO_LABEL,
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
