"""The end of a job in Discord: its result posted as a new message that notifies its owner (then its status
message deleted), or its failure or cancellation edited into its status message.

If Discord refuses the new message, the result is edited into the status message instead; a result that
cannot fit the server's upload limit is re-encoded smaller, and one that never fits is told as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from bot.events import Cancelled, Completed, Failed, JobEvent
from bot.job_service import JobService
from bot.jobs import Job, JobKind
from cogs._buttons import follow_up_job, grid_view, upscale_view
from cogs._edit_budget import EditBudget, EditPriority
from cogs._render import NO_MENTIONS, cancelled_embed, failed_embed, result_filename
from cogs._tracker import MessageRef
from cogs._words.failures import IMAGES_UNREADABLE, TOO_LARGE_TO_UPLOAD, failure_text
from cogs._words.jobs import headline
from cogs._words.results import result_headline
from comfy.images import ImageError, fit_to_limit

if TYPE_CHECKING:
    from bot.imagine_bot import ImagineBot

log = logging.getLogger(__name__)

T = TypeVar("T")

FIT_ATTEMPTS = 4  # re-encodings tried when Discord still finds an upload too large
DEFAULT_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
# Messages after a re-offered job's status message searched for a result an earlier run posted.
POSTED_LOOKBACK = 50


class _TooLarge(Exception):
    """An image that stays over the upload limit after every re-encoding."""


@contextlib.contextmanager
def counted(record: Callable[[str, str], None], purpose: str) -> Iterator[None]:
    """Count one Discord request for the metrics: ok, not_found (the message is gone) or error."""
    try:
        yield
    except discord.NotFound:
        record(purpose, "not_found")
        raise
    except discord.HTTPException:
        record(purpose, "error")
        raise
    record(purpose, "ok")


def message_at(bot: ImagineBot, ref: MessageRef, guild_id: int) -> discord.PartialMessage:
    """The message `ref` points at, to edit or delete (no request until then)."""
    return bot.get_partial_messageable(ref.channel_id, guild_id=guild_id).get_partial_message(ref.message_id)


def _shows_result(message: discord.Message, job_id: int) -> bool:
    """Whether a message carries a job's result: an attachment, and the job's follow-up buttons."""
    ids = [
        getattr(item, "custom_id", None)
        for row in message.components
        for item in getattr(row, "children", ())
    ]
    return bool(message.attachments) and any(follow_up_job(i) == job_id for i in ids if i)


class ResultDelivery:
    """Shows how jobs end, each once (the presenter calls `finish` when a job's tracker has its end)."""

    def __init__(
        self, bot: ImagineBot, service: JobService, edits: EditBudget, undeliverable: set[int]
    ) -> None:
        self.bot = bot
        self.service = service
        self.edits = edits
        self.metrics = bot.services.metrics
        # Jobs whose result cannot be posted for a lasting reason (too large, channel gone or forbidden): this
        # adds them, the presenter's catch_up leaves them alone until the next start.
        self.undeliverable = undeliverable
        self._upload_limits: dict[int, int] = {}

    def note_upload_limit(self, guild_id: int, limit: int | None) -> None:
        """Remember a guild's upload limit as an interaction reported it (`attachment_size_limit`)."""
        if limit:
            self._upload_limits[guild_id] = limit

    async def finish(self, job: Job, ref: MessageRef | None, event: JobEvent, *, reoffered: bool) -> None:
        """Show the job's end (`event`): its result as a new message, or its failure or cancellation edited
        into its status message `ref`. `reoffered`: offered again by catch_up, so an earlier run may have
        posted it already."""
        job = await self.service.get_job(job.id) or job
        if isinstance(event, Completed):
            await self._deliver_result(job, ref, event, reoffered=reoffered)
        elif isinstance(event, Failed):
            await self._deliver(
                job, ref, embeds=[failed_embed(failure_text(event.failure))], notify_if_gone=True
            )
        elif isinstance(event, Cancelled):
            await self._deliver(job, ref, embeds=[cancelled_embed()], notify_if_gone=False)

    async def _deliver_result(
        self, job: Job, ref: MessageRef | None, event: Completed, *, reoffered: bool
    ) -> None:
        """Post the result as a new message that notifies its owner, record it, then delete the status
        message (in that order: a restart finds a job with a result message done, whatever happened after).

        If Discord refuses the new message, the result is edited into the status message instead.
        """
        path = event.grid_path or (event.paths[0] if event.paths else None)
        count = len(event.paths)
        try:
            if path is None:
                raise OSError("no image")
            data = await self.service.read_image(path)
        except (OSError, ValueError) as exc:
            log.warning("job %s finished but its image cannot be read: %s", job.id, exc)
            await self._deliver(job, ref, embeds=[failed_embed(IMAGES_UNREADABLE)], notify_if_gone=True)
            return
        view = grid_view(job.id, count) if count > 1 else upscale_view(job.id)
        try:
            # Offered again after a restart: an earlier run may have posted it and stopped before recording it.
            delivered = await self._posted_before(job, ref) if reoffered else None
            if delivered is None:
                delivered = await self._post_result(job, ref, view, (data, count))
        except _TooLarge:
            self.undeliverable.add(job.id)
            await self._deliver(job, ref, embeds=[failed_embed(TOO_LARGE_TO_UPLOAD)], notify_if_gone=True)
            return
        if delivered is None:
            return  # Discord refused it everywhere: offered again later (see retry_undelivered)
        await self.service.record_result_message(job.id, delivered.channel_id, delivered.message_id)
        if ref is not None and ref != delivered:
            await self._delete_status(job, ref)

    async def _post_result(
        self, job: Job, ref: MessageRef | None, view: discord.ui.View, image: tuple[bytes, int]
    ) -> MessageRef | None:
        """Post the result in the job's channel; if Discord refuses it, edit it into the status message.
        Returns where it is shown, None when nowhere (raises _TooLarge when it cannot fit the upload limit)."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        content = result_headline(job)
        mentions = await self._mentions(job)
        reference = await self._reply_target(job)
        extra: dict[str, Any] = {} if reference is None else {"reference": reference}

        async def send(files: list[discord.File]) -> MessageRef:
            with counted(self.metrics.discord_post, "result"):
                posted = await channel.send(
                    content=content, files=files, view=view, allowed_mentions=mentions, **extra
                )
            return MessageRef(posted.channel.id, posted.id)

        try:
            return await self._with_image(job, image, send)
        except discord.HTTPException as exc:
            refused = exc
        log.warning(
            "cannot post the result of job %s in channel %s: %s; editing it into its status message",
            job.id,
            job.channel_id,
            refused,
        )
        shown = None if ref is None else await self._edit_into(job, ref, content, [], view, image)
        if shown is None and isinstance(refused, discord.Forbidden | discord.NotFound):
            self.undeliverable.add(job.id)  # the channel is gone or closed to the bot
        return shown

    async def _deliver(
        self, job: Job, ref: MessageRef | None, *, embeds: list[discord.Embed], notify_if_gone: bool
    ) -> None:
        """Edit the status message into the job's end (failed, cancelled); if it is gone, post a new message
        that notifies the member (`notify_if_gone`)."""
        content = headline(job)
        if ref is not None and await self._edit_into(job, ref, content, embeds, None, None) is not None:
            return
        if not notify_if_gone:
            return
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            with counted(self.metrics.discord_post, "result"):
                await channel.send(content=content, embeds=embeds, allowed_mentions=await self._mentions(job))
        except discord.HTTPException as exc:
            log.warning("cannot post the end of job %s in channel %s: %s", job.id, job.channel_id, exc)

    async def _edit_into(
        self,
        job: Job,
        ref: MessageRef,
        content: str,
        embeds: list[discord.Embed],
        view: discord.ui.View | None,
        image: tuple[bytes, int] | None,
    ) -> MessageRef | None:
        """Edit the status message into a final one (edits never notify); None when Discord refused it."""
        message = message_at(self.bot, ref, job.guild_id)

        async def edit(files: list[discord.File]) -> None:
            await self.edits.acquire(ref.channel_id, EditPriority.RESULT)
            with counted(self.metrics.discord_edit, "result"):
                await message.edit(
                    content=content, embeds=embeds, attachments=files, view=view, allowed_mentions=NO_MENTIONS
                )

        try:
            await self._with_image(job, image, edit)
        except discord.NotFound:
            log.info("the status message of job %s was deleted", job.id)
            return None
        except discord.HTTPException as exc:
            log.warning("cannot edit the status message of job %s into its end: %s", job.id, exc)
            return None
        return ref

    async def _delete_status(self, job: Job, ref: MessageRef) -> None:
        """Delete the status message once the result is shown elsewhere (a stale one only costs clutter)."""
        try:
            await message_at(self.bot, ref, job.guild_id).delete()
        except discord.NotFound:
            pass  # the member deleted it already
        except discord.HTTPException as exc:
            log.warning("cannot delete the status message of job %s: %s", job.id, exc)

    async def _posted_before(self, job: Job, ref: MessageRef | None) -> MessageRef | None:
        """The result message an earlier run posted but never recorded (it stopped in between): a message
        of the bot after the status message, with the job's image and buttons. None if there is none."""
        if ref is None or self.bot.user is None:
            return None
        me = self.bot.user.id
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async for message in channel.history(limit=POSTED_LOOKBACK, after=discord.Object(ref.message_id)):
                if message.id > ref.message_id and message.author.id == me and _shows_result(message, job.id):
                    log.info("job %s: an earlier run posted its result (message %s)", job.id, message.id)
                    return MessageRef(message.channel.id, message.id)
        except discord.HTTPException as exc:
            log.info("job %s: cannot look for a result an earlier run posted: %s", job.id, exc)
        return None

    async def _mentions(self, job: Job) -> discord.AllowedMentions:
        """Whom a new message about the job may notify: its owner, unless they turned the ping off; never
        anyone else, whatever the prompt contains."""
        settings = await self.bot.services.settings.get_settings(job.user_id)
        if not settings.ping:
            return NO_MENTIONS
        return discord.AllowedMentions(
            everyone=False, users=[discord.Object(job.user_id)], roles=False, replied_user=False
        )

    async def _reply_target(self, job: Job) -> discord.MessageReference | None:
        """The result message of the image a follow-up started from, for the new result to reply to (as its
        status message did)."""
        if job.parent_job_id is None or job.kind is JobKind.REROLL:
            return None  # a fresh prompt, or a reroll (its parent is the image its grid started from)
        parent = await self.service.get_job(job.parent_job_id)
        if parent is None or parent.result_message_id is None or parent.result_channel_id != job.channel_id:
            return None
        return discord.MessageReference(
            message_id=parent.result_message_id,
            channel_id=parent.result_channel_id,
            guild_id=job.guild_id,
            fail_if_not_exists=False,
        )

    async def _with_image(
        self,
        job: Job,
        image: tuple[bytes, int] | None,
        send: Callable[[list[discord.File]], Awaitable[T]],
    ) -> T:
        """Send with the result image, re-encoded to fit the upload limit (smaller again if Discord says 413)."""
        if image is None:
            return await send([])
        data, count = image
        limit = self._upload_limit(job.guild_id)
        for _ in range(FIT_ATTEMPTS):
            try:
                encoded = await asyncio.to_thread(fit_to_limit, data, limit)
            except ImageError as exc:
                log.warning("job %s: %s", job.id, exc)
                break
            file = discord.File(io.BytesIO(encoded.data), result_filename(job, count, encoded.extension))
            try:
                return await send([file])
            except discord.HTTPException as exc:
                if exc.status != 413 and exc.code != 40005:
                    raise
                limit = max(1, int(len(encoded.data) * 0.7))
                log.info(
                    "job %s: %d bytes are over the upload limit; trying %d", job.id, len(encoded.data), limit
                )
        raise _TooLarge(f"job {job.id}: the image does not fit the upload limit")

    def _upload_limit(self, guild_id: int) -> int:
        known = self._upload_limits.get(guild_id)
        if known:
            return known
        guild = self.bot.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
