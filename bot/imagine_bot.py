"""The discord.py Bot subclass: owns nothing global, gets its dependencies through its constructor."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord.ext import commands

from bot.config import Config
from bot.services import Services

log = logging.getLogger(__name__)

# Loaded in this order by setup_hook; `_private` modules in cogs/ are helpers, never extensions.
DEFAULT_EXTENSIONS: tuple[str, ...] = ("cogs.imagine", "cogs.admin", "cogs.settings")


class ImagineBot(commands.Bot):
    """The comfy-imagine bot. No privileged intents: slash commands and buttons only.

    `setup_hook` loads the extensions (each cog registers its persistent buttons with `add_dynamic_items`
    and subscribes to job events when it loads), then starts the services (opens the database, starts the
    scheduler, which re-attaches to jobs left in flight) unless `start_services` is False (`sync-commands`).
    """

    def __init__(
        self,
        *,
        config: Config,
        services: Services,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        start_services: bool = True,
    ) -> None:
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
        self.services = services
        self.initial_extensions = tuple(extensions)
        self.start_services = start_services

    async def setup_hook(self) -> None:
        """Load the extensions, then start the services. Commands are synced by `sync-commands`.

        Extensions subscribe to job events as they load, so they see the results of jobs that the
        scheduler re-attaches (or finds finished) while it starts.
        """
        for name in self.initial_extensions:
            await self.load_extension(name)
        log.info("loaded %d extension(s)", len(self.initial_extensions))
        if self.start_services:
            await self.services.start()
            self.dispatch("services_started")

    async def close(self) -> None:
        """Unload the extensions (their event loops stop), log out, then stop the services."""
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except commands.ExtensionError:
                log.exception("unloading %s failed", name)
        await super().close()
        if self.services.started:
            await self.services.close()

    async def on_ready(self) -> None:
        """Log who we are once the gateway session is ready."""
        user = self.user
        log.info("logged in as %s (id %s) in %d guild(s)", user, user and user.id, len(self.guilds))
