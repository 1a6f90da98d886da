"""The /settings panel: selects for model, aspect and style, a negative-prompt modal, the ping and Remix
toggles and Reset.

Every component is a DynamicItem whose custom_id carries the owner's user id (`settings:<user>:<what>`),
so the panel keeps working after a restart and refuses anyone else who presses it.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import Any, Final

import discord

from bot.errors import MemberError
from bot.imagine_bot import ImagineBot
from bot.jobs import UserSettings
from bot.settings_service import NEGATIVE_MAX_CHARS, SettingsService
from cogs._errors import report_error, send_ephemeral
from cogs._words.panels import (
    ASPECT_DEFAULT_OPTION,
    ASPECT_NAME,
    ASPECT_NOT_SET,
    MODEL_NAME,
    NEGATIVE_BUTTON,
    NEGATIVE_HINT,
    NEGATIVE_LABEL,
    NEGATIVE_NAME,
    NEGATIVE_PLACEHOLDER,
    NOT_SET,
    PING_FIELD,
    REMIX_FIELD,
    RESET_BUTTON,
    SETTINGS_FOOTER,
    SETTINGS_TITLE,
    STYLE_DEFAULT_OPTION,
    STYLE_NAME,
    model_default_option,
    model_value,
    ping_button,
    ping_note,
    ping_value,
    remix_button,
    remix_note,
    remix_value,
    reset_note,
)
from cogs._words.refusals import NOT_YOUR_PANEL, Where
from cogs._words.text import clip
from comfy.params import ParamError

log = logging.getLogger(__name__)

DEFAULT_VALUE: Final = "__default__"  # the select option that clears a setting
_MAX_OPTIONS: Final = 25
_PREFIX: Final = "settings"


class PanelSelect(StrEnum):
    """A select of the panel; its value is the last part of its custom_id and the setting it saves (the
    keyword of `SettingsService.update_settings`)."""

    MODEL = "model"
    ASPECT = "aspect"
    STYLE = "style"


class PanelButton(StrEnum):
    """A button of the panel; its value is the last part of its custom_id."""

    NEGATIVE = "negative"  # also the custom_id of the negative prompt's modal (after the prefix) and input
    PING = "ping"
    REMIX = "remix"
    RESET = "reset"


_SELECT_TEMPLATE: Final = rf"{_PREFIX}:(?P<user>[0-9]{{1,20}}):(?P<what>{'|'.join(PanelSelect)})"
_BUTTON_TEMPLATE: Final = rf"{_PREFIX}:(?P<user>[0-9]{{1,20}}):(?P<what>{'|'.join(PanelButton)})"


def _service(interaction: discord.Interaction[ImagineBot]) -> SettingsService:
    return interaction.client.services.settings


def _custom_id(user_id: int, what: PanelSelect | PanelButton) -> str:
    return f"{_PREFIX}:{user_id}:{what}"


def settings_embed(
    settings: UserSettings, service: SettingsService, *, note: str | None = None
) -> discord.Embed:
    """The panel's text: the member's current defaults."""
    model = model_value(settings.model, service.model_names[0], known=settings.model in service.model_names)
    escape = discord.utils.escape_markdown
    embed = discord.Embed(title=SETTINGS_TITLE, description=note or None, colour=discord.Colour.blurple())
    embed.add_field(name=MODEL_NAME, value=escape(model), inline=True)
    embed.add_field(name=ASPECT_NAME, value=settings.aspect or ASPECT_NOT_SET, inline=True)
    embed.add_field(name=STYLE_NAME, value=escape(settings.style) if settings.style else NOT_SET, inline=True)
    negative = escape(clip(settings.negative, 1000)) if settings.negative else NOT_SET
    embed.add_field(name=NEGATIVE_NAME, value=negative, inline=False)
    embed.add_field(name=PING_FIELD, value=ping_value(settings.ping), inline=False)
    embed.add_field(name=REMIX_FIELD, value=remix_value(settings.remix), inline=False)
    embed.set_footer(text=SETTINGS_FOOTER)
    return embed


def _options(default_label: str, names: list[str], current: str | None) -> list[discord.SelectOption]:
    options = [discord.SelectOption(label=default_label, value=DEFAULT_VALUE, default=current is None)]
    for name in names[: _MAX_OPTIONS - 1]:
        options.append(discord.SelectOption(label=name, value=name, default=name == current))
    return options


def settings_view(settings: UserSettings, service: SettingsService) -> discord.ui.View:
    """The panel's components, bound to the member whose settings they are."""
    user_id = settings.user_id
    view = discord.ui.View(timeout=None)
    default_model = service.model_names[0]
    selects = {
        PanelSelect.MODEL: (
            MODEL_NAME,
            _options(model_default_option(default_model), service.model_names, settings.model),
        ),
        PanelSelect.ASPECT: (
            ASPECT_NAME,
            _options(ASPECT_DEFAULT_OPTION, service.aspect_choices, settings.aspect),
        ),
    }
    if service.style_names:
        selects[PanelSelect.STYLE] = (
            STYLE_NAME,
            _options(STYLE_DEFAULT_OPTION, service.style_names, settings.style),
        )
    for row, (setting, (placeholder, options)) in enumerate(selects.items()):
        select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id=_custom_id(user_id, setting), placeholder=placeholder, options=options, row=row
        )
        view.add_item(SettingsSelect(select, user_id, setting))
    on, off = discord.ButtonStyle.success, discord.ButtonStyle.secondary
    buttons = {
        PanelButton.NEGATIVE: (NEGATIVE_BUTTON, discord.ButtonStyle.secondary),
        PanelButton.PING: (ping_button(settings.ping), on if settings.ping else off),
        PanelButton.REMIX: (remix_button(settings.remix), on if settings.remix else off),
        PanelButton.RESET: (RESET_BUTTON, discord.ButtonStyle.danger),
    }
    for what, (label, style) in buttons.items():
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label, style=style, custom_id=_custom_id(user_id, what), row=len(selects)
        )
        view.add_item(SettingsButton(button, user_id, what))
    return view


async def show_panel(
    interaction: discord.Interaction[ImagineBot], settings: UserSettings, *, note: str | None = None
) -> None:
    """Redraw the panel the member is using (the message their component or modal came from)."""
    service = _service(interaction)
    await interaction.response.edit_message(
        embed=settings_embed(settings, service, note=note), view=settings_view(settings, service)
    )


class SettingsSelect(discord.ui.DynamicItem[discord.ui.Select], template=_SELECT_TEMPLATE):
    """A select of the /settings panel: model, aspect ratio or style."""

    def __init__(self, select: discord.ui.Select[discord.ui.View], user_id: int, what: PanelSelect) -> None:
        super().__init__(select)
        self.user_id = user_id
        self.what = what

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SettingsSelect:
        """Wrap the select of the pressed panel (its options came with the message)."""
        assert isinstance(item, discord.ui.Select)  # discord.py rebuilt it from a string select
        return cls(item, int(match["user"]), PanelSelect(match["what"]))

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Save the chosen value and redraw the panel."""
        if interaction.user.id != self.user_id:
            await send_ephemeral(interaction, NOT_YOUR_PANEL)
            return
        values = self.item.values
        value = None if not values or values[0] == DEFAULT_VALUE else values[0]
        try:
            settings = await _service(interaction).update_settings(self.user_id, **{self.what.value: value})
        except (MemberError, ParamError) as exc:
            await report_error(interaction, exc, Where.SETTINGS)
            return
        await show_panel(interaction, settings)


class SettingsButton(discord.ui.DynamicItem[discord.ui.Button], template=_BUTTON_TEMPLATE):
    """A button of the /settings panel: open the negative prompt modal, turn the ping or Remix on or off,
    or reset everything."""

    def __init__(self, button: discord.ui.Button[discord.ui.View], user_id: int, what: PanelButton) -> None:
        super().__init__(button)
        self.user_id = user_id
        self.what = what

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SettingsButton:
        """Wrap the button of the pressed panel."""
        assert isinstance(item, discord.ui.Button)  # discord.py rebuilt it from a button
        return cls(item, int(match["user"]), PanelButton(match["what"]))

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Open the modal, flip the ping, or forget every default."""
        if interaction.user.id != self.user_id:
            await send_ephemeral(interaction, NOT_YOUR_PANEL)
            return
        service = _service(interaction)
        if self.what is PanelButton.NEGATIVE:
            current = await service.get_settings(self.user_id)
            await interaction.response.send_modal(NegativeModal(self.user_id, current.negative))
            return
        if self.what is PanelButton.PING:
            current = await service.get_settings(self.user_id)
            settings = await service.set_ping(self.user_id, not current.ping)
            await show_panel(interaction, settings, note=ping_note(settings.ping))
            return
        if self.what is PanelButton.REMIX:
            current = await service.get_settings(self.user_id)
            switched = await service.set_remix(self.user_id, not current.remix)
            await show_panel(interaction, switched, note=remix_note(switched.remix))
            return
        had_any = await service.clear_settings(self.user_id)
        await show_panel(interaction, UserSettings(user_id=self.user_id), note=reset_note(had_any))


class NegativeModal(discord.ui.Modal):
    """Asks for the negative prompt; an empty answer clears it."""

    def __init__(self, user_id: int, current: str | None) -> None:
        super().__init__(
            title=NEGATIVE_NAME, custom_id=f"{_PREFIX}-{PanelButton.NEGATIVE}:{user_id}", timeout=900
        )
        self.user_id = user_id
        self.text: discord.ui.TextInput[NegativeModal] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph,
            placeholder=NEGATIVE_PLACEHOLDER,
            default=current,
            required=False,
            max_length=NEGATIVE_MAX_CHARS,
            custom_id=PanelButton.NEGATIVE.value,
        )
        self.add_item(
            discord.ui.Label(
                text=NEGATIVE_LABEL,
                description=NEGATIVE_HINT,
                component=self.text,
            )
        )

    async def on_submit(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Save the negative prompt and redraw the panel it was opened from."""
        if interaction.user.id != self.user_id:
            await send_ephemeral(interaction, NOT_YOUR_PANEL)
            return
        try:
            settings = await _service(interaction).update_settings(self.user_id, negative=self.text.value)
        except (MemberError, ParamError) as exc:
            await report_error(interaction, exc, Where.SETTINGS)
            return
        if interaction.message is None:
            await interaction.response.send_message(
                embed=settings_embed(settings, _service(interaction)), ephemeral=True
            )
            return
        await show_panel(interaction, settings)
