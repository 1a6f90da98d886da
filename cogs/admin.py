"""The admin and member commands /queue, /cancel and /status: parse, call a service, render.

Every answer is ephemeral: /queue lists other members' prompts and /status is a diagnostic, so neither
belongs in the channel; refusals are seen only by whoever asked.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import MemberError
from bot.imagine_bot import ImagineBot
from bot.job_service import parse_job_ref
from cogs._admin_views import QueuePageButton, queue_embed, queue_view, status_embed
from cogs._errors import report_error, send_ephemeral
from cogs._permissions import is_admin
from cogs._render import NO_MENTIONS
from cogs._words.buttons import cancelled_text
from cogs._words.commands import CANCEL, QUEUE, STATUS, choice_label
from cogs._words.refusals import COMMAND_GUILD_ONLY, Where

log = logging.getLogger(__name__)


class AdminCog(commands.Cog):
    """/queue, /cancel and /status."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.jobs = bot.services.jobs
        self.queue_service = bot.services.queue

    async def cog_load(self) -> None:
        """Register the /queue page buttons, so pages turn after a restart too."""
        self.bot.add_dynamic_items(QueuePageButton)

    async def cog_unload(self) -> None:
        """Stop handling the /queue page buttons."""
        self.bot.remove_dynamic_items(QueuePageButton)

    def _is_admin(self, user: discord.abc.User) -> bool:
        return is_admin(user, self.bot.config.discord.admin_role_ids)

    @app_commands.command(name=QUEUE.name, description=QUEUE.description)
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction[ImagineBot]) -> None:
        """Admins see the server's queue, members their own jobs; pages turn with ◀ ▶."""
        if interaction.guild_id is None:
            await send_ephemeral(interaction, COMMAND_GUILD_ONLY)
            return
        page = await self.queue_service.queue_page(
            interaction.guild_id,
            viewer_id=interaction.user.id,
            admin=self._is_admin(interaction.user),
            page=0,
        )
        guild_name = interaction.guild.name if interaction.guild else None
        await interaction.response.send_message(
            embed=queue_embed(page, guild_name),
            view=queue_view(page, interaction.user.id),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name=CANCEL.name, description=CANCEL.description)
    @app_commands.describe(**CANCEL.options)
    @app_commands.guild_only()
    async def cancel(self, interaction: discord.Interaction[ImagineBot], job: str) -> None:
        """Admins may cancel any job of the server, members only their own."""
        if interaction.guild_id is None:
            await send_ephemeral(interaction, COMMAND_GUILD_ONLY)
            return
        try:
            done = await self.jobs.cancel(
                parse_job_ref(job),
                guild_id=interaction.guild_id,
                user_id=interaction.user.id,
                admin=self._is_admin(interaction.user),
            )
        except MemberError as exc:
            await report_error(interaction, exc, Where.CANCEL_COMMAND)
            return
        text = cancelled_text(done, where=Where.CANCEL_COMMAND, actor_id=interaction.user.id)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @cancel.autocomplete("job")
    async def _cancel_choices(
        self, interaction: discord.Interaction[ImagineBot], current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        owner = None if self._is_admin(interaction.user) else interaction.user.id
        jobs = await self.jobs.cancellable(interaction.guild_id, owner, current)
        return [app_commands.Choice(name=choice_label(job), value=str(job.id)) for job in jobs]

    @app_commands.command(name=STATUS.name, description=STATUS.description)
    @app_commands.guild_only()
    async def status(self, interaction: discord.Interaction[ImagineBot]) -> None:
        """Anyone may look; admins also see why a backend is down."""
        if interaction.guild_id is None:
            await send_ephemeral(interaction, COMMAND_GUILD_ONLY)
            return
        report = await self.queue_service.status(interaction.guild_id)
        await interaction.response.send_message(
            embed=status_embed(report, admin=self._is_admin(interaction.user)),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: ImagineBot) -> None:
    """Extension entry point."""
    await bot.add_cog(AdminCog(bot))
