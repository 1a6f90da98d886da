"""The discord.py Bot subclass: owns nothing global, gets its dependencies through its constructor."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord.ext import commands

from bot.config import Config

log = logging.getLogger(__name__)

# Loaded in this order by setup_hook; `_private` modules in cogs/ are helpers, never extensions.
DEFAULT_EXTENSIONS: tuple[str, ...] = ()


class ImagineBot(commands.Bot):
    """The comfy-imagine bot. No privileged intents: slash commands and buttons only."""

    def __init__(self, *, config: Config, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> None:
        # The bot never joins voice; skip discord.py's start-up warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.config = config
        self.initial_extensions = tuple(extensions)

    async def setup_hook(self) -> None:
        """Load the extensions; commands are synced by `comfy-imagine sync-commands`, not here."""
        for name in self.initial_extensions:
            await self.load_extension(name)
        log.info("loaded %d extension(s)", len(self.initial_extensions))

    async def on_ready(self) -> None:
        """Log who we are once the gateway session is ready."""
        log.info(
            "logged in as %s (id %s) in %d guild(s)", self.user, self.user and self.user.id, len(self.guilds)
        )
