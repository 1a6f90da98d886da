"""The discord.py Bot subclass: owns nothing global, gets its dependencies through its constructor."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import discord
from discord.ext import commands

from bot.config import Config
from bot.job_service import QueuedJob
from bot.metrics import Health, MetricsServer, RateLimitCounter
from bot.services import Services

log = logging.getLogger(__name__)

# Loaded in this order by setup_hook; `_private` modules in cogs/ are helpers, never extensions.
DEFAULT_EXTENSIONS: tuple[str, ...] = ("cogs.imagine", "cogs.admin", "cogs.settings")


class JobMessages(Protocol):
    """What the buttons under a job ask of the messages that show jobs (the imagine extension's presenter):
    show a job they just queued, and follow it until it ends."""

    def note_upload_limit(self, guild_id: int, limit: int | None) -> None:
        """Remember a guild's upload limit as an interaction reported it."""
        ...

    async def post_status(self, queued: QueuedJob, *, reply_to: discord.Message | None = None) -> int | None:
        """Post the job's status message in its channel; its id, or None when the bot cannot post there."""
        ...

    async def post_status_followup(self, queued: QueuedJob, interaction: discord.Interaction[Any]) -> None:
        """Post the job's status message as a followup of the interaction."""
        ...


class ImagineBot(commands.AutoShardedBot):
    """The comfy-imagine bot. No privileged intents: slash commands, buttons and reactions only.

    It connects the shards `[discord] shard_ids` of `shard_count` (several processes share one bot that
    way, on PostgreSQL), or every shard Discord recommends when they are not set.

    `setup_hook` loads the extensions (each cog registers its persistent buttons with `add_dynamic_items`
    and subscribes to job events when it loads), then starts the services (opens the database, starts the
    scheduler, which re-attaches to jobs left in flight) unless `start_services` is False (`sync-commands`).

    Cogs take their use cases from `services` when they are built; buttons, which discord.py rebuilds from
    their custom_id, take them from `interaction.client.services`, and the messages that show jobs from
    `job_messages` (set by the imagine extension while it is loaded).
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
        # No privileged intent: slash commands, buttons, and reactions (✉️, ❌) on job messages as raw events.
        intents = discord.Intents.default()
        intents.guild_reactions = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            shard_count=config.discord.shard_count,
            # discord.py's stubs say list[int], but it takes None (its default) as "every shard".
            shard_ids=config.discord.shard_ids,  # type: ignore[arg-type]
        )
        self.config = config
        self.services = services
        self.initial_extensions = tuple(extensions)
        self.start_services = start_services
        self.metrics_server: MetricsServer | None = None
        self.job_messages: JobMessages | None = None
        self._rate_limits = RateLimitCounter(services.metrics)
        # Dispatched as `on_job_events_missed`: the presenter shows what the event relay may have missed.
        services.on_events_missed = lambda: self.dispatch("job_events_missed")

    async def setup_hook(self) -> None:
        """Load the extensions, then start the services. Commands are synced by `sync-commands`.

        Extensions subscribe to job events as they load, so they see the results of jobs that the
        scheduler re-attaches (or finds finished) while it starts.
        """
        logging.getLogger("discord.http").addFilter(self._rate_limits)
        for name in self.initial_extensions:
            await self.load_extension(name)
        log.info("loaded %d extension(s)", len(self.initial_extensions))
        if self.start_services:
            await self.services.start()
            self.dispatch("services_started")
            await self._serve_metrics()

    def holds_guild(self, guild_id: int) -> bool:
        """Whether one of this process's shards holds the guild (Discord's `(guild_id >> 22) % shard_count`),
        so this process shows its jobs; True when it runs every shard. With several processes on one
        database every process hears every job's events (its own, and the others' through the event relay):
        only the one holding the guild's shard may post and edit its messages, or a result shows twice."""
        shards = self.config.discord
        if shards.shard_ids is None or shards.shard_count is None:
            return True
        return (guild_id >> 22) % shards.shard_count in shards.shard_ids

    async def _serve_metrics(self) -> None:
        """Serve /metrics and /healthz when `[metrics] port` is set."""
        settings = self.config.metrics
        if settings.port is None:
            return
        server = MetricsServer(
            self.services.metrics,
            host=settings.host,
            port=settings.port,
            snapshot=lambda: self.services.store.queue_snapshot(),
            health=self.health,
        )
        await server.start()
        self.metrics_server = server

    async def health(self) -> Health:
        """Healthy while the Discord session is up and the database answers; backends are reported only
        (jobs wait in the queue while every ComfyUI is down, which is not the bot being broken)."""
        shards = list(self.shards.values())
        discord_ok = not self.is_closed() and bool(shards) and not any(shard.is_closed() for shard in shards)
        database_ok = False
        if self.services.started:
            try:
                await self.services.store.schema_version()
                database_ok = True
            except Exception as exc:
                log.warning("health check: the database does not answer: %s", exc)
        backends = (
            {b.name: b.up for b in self.services.scheduler.backend_status()} if self.services.started else {}
        )
        return Health(
            healthy=discord_ok and database_ok,
            checks={"discord": discord_ok, "database": database_ok, "backends": backends},
        )

    async def close(self) -> None:
        """Unload the extensions (their event loops stop), log out, then stop the services."""
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except commands.ExtensionError:
                log.exception("unloading %s failed", name)
        await super().close()
        logging.getLogger("discord.http").removeFilter(self._rate_limits)
        if self.metrics_server is not None:
            await self.metrics_server.close()
            self.metrics_server = None
        if self.services.started:
            await self.services.close()

    async def on_ready(self) -> None:
        """Log who we are once the gateway session is ready."""
        user = self.user
        log.info("logged in as %s (id %s) in %d guild(s)", user, user and user.id, len(self.guilds))
