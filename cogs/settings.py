"""/settings: a member's defaults for /imagine (model, aspect, style, negative prompt), whether their finished
images ping them, and Remix mode, on an ephemeral panel."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.imagine_bot import ImagineBot
from cogs._render import NO_MENTIONS
from cogs._settings_views import SettingsButton, SettingsSelect, settings_embed, settings_view
from cogs._words.commands import SETTINGS
from cogs._words.panels import ping_note, remix_note

log = logging.getLogger(__name__)


class SettingsCog(commands.Cog):
    """/settings."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.service = bot.services.settings

    async def cog_load(self) -> None:
        """Register the panel's components, so panels keep working after a restart."""
        self.bot.add_dynamic_items(SettingsSelect, SettingsButton)

    async def cog_unload(self) -> None:
        """Stop handling the panel's components."""
        self.bot.remove_dynamic_items(SettingsSelect, SettingsButton)

    @app_commands.command(name=SETTINGS.name, description=SETTINGS.description)
    @app_commands.describe(**SETTINGS.options)
    async def settings(
        self,
        interaction: discord.Interaction[ImagineBot],
        ping: bool | None = None,
        remix: bool | None = None,
    ) -> None:
        """Show the member's panel (after saving `ping` and `remix` when given); only they see it and only
        they can use it."""
        current, notes = await self.service.get_settings(interaction.user.id), []
        if ping is not None:
            current = await self.service.set_ping(interaction.user.id, ping)
            notes.append(ping_note(ping))
        if remix is not None:
            current = await self.service.set_remix(interaction.user.id, remix)
            notes.append(remix_note(remix))
        note = " ".join(notes) or None
        await interaction.response.send_message(
            embed=settings_embed(current, self.service, note=note),
            view=settings_view(current, self.service),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: ImagineBot) -> None:
    """Extension entry point."""
    await bot.add_cog(SettingsCog(bot))
