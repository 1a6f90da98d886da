"""/imagine and /blend: check and queue a prompt (or images), show its status message; the presenter, buttons
and reactions do the rest."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import MemberError, Reason
from bot.image_prompts import check_image_prompt_size
from bot.imagine_bot import ImagineBot
from bot.job_service import QueuedJob
from bot.jobs import ImagePrompt
from cogs._buttons import BUTTON_CLASSES, submit_prompt_modal
from cogs._errors import on_app_command_error, send_ephemeral
from cogs._presenter import Presenter
from cogs._reactions import Reactions
from cogs._render import StatusState
from cogs._words.commands import BLEND, IMAGINE, blend_shape_name
from cogs._words.refusals import COMMAND_GUILD_ONLY, IMAGINE_GUILD_ONLY

log = logging.getLogger(__name__)

INTERACTION_ACKNOWLEDGED = 40060  # Discord's error code: the interaction already has its response
# /blend's dimensions: the shape of the new images, each the model's pixel area (as --ar makes it).
BLEND_SHAPES = {"2:3": (2, 3), "1:1": (1, 1), "3:2": (3, 2)}
DEFAULT_BLEND_SHAPE = "1:1"


class ImagineCog(commands.Cog, name="Imagine"):
    """The /imagine command, its live status messages, the buttons under its results and the reactions on
    them."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.service = bot.services.jobs
        self.presenter = Presenter(
            bot,
            self.service,
            interval=bot.config.progress.edit_interval_s,
            channel_edits_per_5s=bot.config.progress.channel_edits_per_5s,
        )
        self.reactions = Reactions(bot)
        self._previous_error_handler: Any = None

    async def cog_load(self) -> None:
        """Register the persistent buttons, start following jobs, install the error handler."""
        self.bot.add_dynamic_items(*BUTTON_CLASSES)
        self.bot.job_messages = self.presenter
        self.presenter.start()
        self._previous_error_handler = self.bot.tree.on_error
        self.bot.tree.on_error = on_app_command_error  # type: ignore[method-assign]

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[ImagineBot]) -> None:
        """Answer the prompt modals of follow-ups (Remix, Custom Zoom), whenever they were opened."""
        await submit_prompt_modal(interaction)

    @commands.Cog.listener()
    async def on_services_started(self) -> None:
        """Once the database is open: post the results the last run finished but never showed."""
        await self.presenter.catch_up()

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """✉️ and ❌ on the bot's job messages (cogs._reactions), also on messages from before a restart.
        The outcome is dispatched as `imagine_reaction` (payload, outcome) for whoever waits on it."""
        outcome = await self.reactions.handle(payload)
        self.bot.dispatch("imagine_reaction", payload, outcome)

    async def cog_unload(self) -> None:
        """Undo cog_load."""
        self.bot.tree.on_error = self._previous_error_handler  # type: ignore[method-assign]
        self.bot.remove_dynamic_items(*BUTTON_CLASSES)
        if self.bot.job_messages is self.presenter:
            self.bot.job_messages = None
        await self.presenter.stop()

    @app_commands.command(name=IMAGINE.name, description=IMAGINE.description)
    @app_commands.describe(**IMAGINE.options)
    @app_commands.guild_only()
    async def imagine(
        self,
        interaction: discord.Interaction[ImagineBot],
        prompt: app_commands.Range[str, 1, 6000],
        image: discord.Attachment | None = None,
        model: str | None = None,
    ) -> None:
        """Queue the prompt's jobs and answer with one status message per job."""
        if interaction.guild_id is None or interaction.channel_id is None:
            await send_ephemeral(interaction, IMAGINE_GUILD_ONLY)
            return
        self.presenter.note_upload_limit(interaction.guild_id, interaction.filesize_limit)
        jobs = await self.service.prepare(
            prompt,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            has_image=image is not None,
            model=model,
            parent_channel_id=getattr(interaction.channel, "parent_id", None),
        )
        if image is None:
            queued = await self.service.submit(jobs)
        else:
            _check_attachment(image)
            async with _thinking(interaction):
                image_prompt = await self._save(image)
                queued = await self.service.submit(self.service.with_image(jobs, image_prompt))
        await self._announce(interaction, queued)

    @app_commands.command(name=BLEND.name, description=BLEND.description)
    @app_commands.describe(**BLEND.options)
    @app_commands.choices(
        dimensions=[
            app_commands.Choice(name=blend_shape_name(*shape), value=key)
            for key, shape in BLEND_SHAPES.items()
        ]
    )
    @app_commands.guild_only()
    async def blend(
        self,
        interaction: discord.Interaction[ImagineBot],
        image1: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        dimensions: app_commands.Choice[str] | None = None,
    ) -> None:
        """Queue a blend of the attached images and answer with its status message."""
        if interaction.guild_id is None or interaction.channel_id is None:
            await send_ephemeral(interaction, COMMAND_GUILD_ONLY)
            return
        self.presenter.note_upload_limit(interaction.guild_id, interaction.filesize_limit)
        images = [a for a in (image1, image2, image3, image4, image5) if a is not None]
        shape = BLEND_SHAPES.get(dimensions.value if dimensions else DEFAULT_BLEND_SHAPE, (1, 1))
        job = await self.service.prepare_blend(
            len(images),
            shape,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            parent_channel_id=getattr(interaction.channel, "parent_id", None),
        )
        for image in images:
            _check_attachment(image, named=True)
        async with _thinking(interaction):
            saved = [await self._save(image) for image in images]
            queued = await self.service.submit([self.service.with_blend_images(job, saved)])
        await self._announce(interaction, queued)

    async def _save(self, image: discord.Attachment) -> ImagePrompt:
        """Download an attachment and keep it for the scheduler (checked: an image, not too large)."""
        return await self.service.save_image_prompt(await _download(image))

    @imagine.autocomplete("model")
    async def _model_choices(
        self, interaction: discord.Interaction[ImagineBot], current: str
    ) -> list[app_commands.Choice[str]]:
        wanted = current.strip().lower()
        names = [n for n in self.service.model_names() if wanted in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    async def _announce(self, interaction: discord.Interaction[ImagineBot], queued: list[QueuedJob]) -> None:
        """One status message per job: the first is the interaction's response, the others followups."""
        assert interaction.channel_id is not None
        for item in queued:
            state = StatusState(position=item.position)
            parts = self.presenter.status_message(item.job, state)
            message_id: int | None = None
            try:
                if not interaction.response.is_done():
                    callback = await interaction.response.send_message(**parts)
                    message_id = callback.message_id
                else:
                    message = await interaction.followup.send(**parts, wait=True)
                    message_id = message.id
            except discord.HTTPException as exc:
                message_id = await _adopt_answer(interaction, exc)
                if message_id is not None:
                    await self.presenter.track(item.job, interaction.channel_id, message_id, state)
                    continue
                log.warning(
                    "cannot answer /imagine for job %s (%s); posting in the channel", item.job.id, exc
                )
                message_id = await self.presenter.post_status(item)
                if message_id is not None:
                    continue  # post_status recorded it
                # Shown nowhere (Discord told the member the command failed): stop it rather than run it
                # for no one.
                await self.presenter.track(item.job, interaction.channel_id, None, state)
                log.warning("job %s cannot be shown anywhere; cancelling it", item.job.id)
                with contextlib.suppress(MemberError):  # it ended meanwhile
                    await self.service.cancel(
                        item.job.id, guild_id=item.job.guild_id, user_id=item.job.user_id, admin=True
                    )
                continue
            await self.presenter.track(item.job, interaction.channel_id, message_id, state)


async def _adopt_answer(
    interaction: discord.Interaction[ImagineBot], error: discord.HTTPException
) -> int | None:
    """The id of the answer Discord already shows when a retried response was refused as "already
    acknowledged" (40060: an earlier try went through but its reply was lost); None otherwise."""
    if error.code != INTERACTION_ACKNOWLEDGED:
        return None
    try:
        message = await interaction.original_response()
    except discord.HTTPException as exc:
        log.warning("the /imagine answer was taken but cannot be read back: %s", exc)
        return None
    return message.id


@contextlib.asynccontextmanager
async def _thinking(interaction: discord.Interaction[ImagineBot]) -> AsyncIterator[None]:
    """Show "thinking" while attachments download (that can take longer than Discord's 3 s deadline); on
    an error, delete it: the error goes to the member alone, the public "thinking" message must not stay."""
    await interaction.response.defer(thinking=True)
    try:
        yield
    except BaseException:
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("cannot delete the thinking message: %s", exc)
        raise


def _check_attachment(image: discord.Attachment, *, named: bool = False) -> None:
    """Refuse an attachment that is too large or not an image (by what Discord says of it); `named`: say
    which one in the refusal (a command with several)."""
    check_image_prompt_size(image.size, image.filename if named else None)
    content_type = (image.content_type or "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith("image/"):
        raise MemberError(Reason.NOT_AN_IMAGE, value=image.filename, detail=content_type)


async def _download(image: discord.Attachment) -> bytes:
    try:
        return await image.read()
    except (discord.HTTPException, discord.ClientException) as exc:
        log.warning("cannot download attachment %s: %s", image.id, exc)
        raise MemberError(Reason.IMAGE_DOWNLOAD_FAILED) from None


async def setup(bot: ImagineBot) -> None:
    """Extension entry point."""
    await bot.add_cog(ImagineCog(bot))
