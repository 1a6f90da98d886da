"""Placeholder for the settings extension (filled in by the Discord issue)."""

from __future__ import annotations

from discord.ext import commands

from bot.imagine_bot import ImagineBot


class SettingsCog(commands.Cog):
    """Slash commands of the settings extension."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot


async def setup(bot: ImagineBot) -> None:
    """Extension entry point."""
    await bot.add_cog(SettingsCog(bot))
