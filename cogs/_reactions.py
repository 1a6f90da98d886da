"""Reactions on the bot's job messages: ✉️ on a result sends it to the member by DM; ❌ by the job's owner or
an admin deletes a result message, or cancels the job of a status message.

Only raw gateway events (`on_raw_reaction_add`) are used: they come for every message, also those posted
before a restart, with no message cache and no privileged intent. The message is found in the database by
its id (`JobService.job_by_message`); nothing about it lives in memory.
"""

from __future__ import annotations

import asyncio
import io
import logging
from enum import StrEnum
from typing import TYPE_CHECKING

import discord

from bot.errors import MemberError
from bot.jobs import Job, JobStatus
from cogs._permissions import is_admin
from cogs._render import NO_MENTIONS
from cogs._words.results import DM_PROMPT_CHARS, result_dm_text
from comfy.images import ImageError, fit_to_limit
from comfy.params import format_request

if TYPE_CHECKING:
    from bot.imagine_bot import ImagineBot

log = logging.getLogger(__name__)

ENVELOPE = "\u2709"  # ✉️, compared without its variation selector (clients send either)
CROSS = "\u274c"  # ❌
DM_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES  # what a bot may upload in a DM, per message


class ReactionOutcome(StrEnum):
    """What the bot did about a reaction (logged, and dispatched as `imagine_reaction` for whoever waits)."""

    IGNORED = "ignored"  # not ✉️ or ❌, not on a job message of the bot, or the bot's own reaction
    SENT = "sent"  # ✉️: the result went to the member by DM
    DMS_CLOSED = "dms_closed"  # ✉️: the member does not take DMs from the bot
    REMOVED = "removed"  # ❌: the result message was deleted
    CANCELLED = "cancelled"  # ❌: the job of the status message was cancelled
    REFUSED = "refused"  # ❌ from someone who may not, or on a job that already ended
    FAILED = "failed"  # Discord refused what the bot tried (logged)


def reaction_emoji(emoji: discord.PartialEmoji) -> str | None:
    """ENVELOPE or CROSS for the reactions the bot handles, None for any other."""
    if not emoji.is_unicode_emoji():
        return None
    name = emoji.name.replace("\ufe0f", "")
    return name if name in (ENVELOPE, CROSS) else None


class Reactions:
    """Handles ✉️ and ❌ on the messages that show jobs."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.service = bot.services.jobs

    async def handle(self, payload: discord.RawReactionActionEvent) -> ReactionOutcome:
        """Do what the reaction asks, if it is one the bot handles; never raises."""
        try:
            return await self._handle(payload)
        except MemberError as exc:  # the job went meanwhile (retention)
            log.debug("reaction on message %s: %s", payload.message_id, exc)
            return ReactionOutcome.IGNORED
        except Exception:
            log.exception(
                "reaction %s by user %s on message %s failed",
                payload.emoji,
                payload.user_id,
                payload.message_id,
            )
            return ReactionOutcome.FAILED

    async def _handle(self, payload: discord.RawReactionActionEvent) -> ReactionOutcome:
        emoji = reaction_emoji(payload.emoji)
        me = self.bot.user
        if emoji is None or payload.guild_id is None or me is None or payload.user_id == me.id:
            return ReactionOutcome.IGNORED
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return ReactionOutcome.IGNORED  # someone else's message: not worth a database read
        job = await self.service.job_by_message(payload.message_id, payload.guild_id)
        if job is None:
            return ReactionOutcome.IGNORED
        on_result = job.result_message_id == payload.message_id
        if emoji == ENVELOPE:
            if not on_result or job.status is not JobStatus.COMPLETED:
                return ReactionOutcome.IGNORED
            return await self._send_copy(job, payload.user_id)
        admin = is_admin(payload.member, self.bot.config.discord.admin_role_ids) if payload.member else False
        if on_result:
            return await self._remove_result(job, payload, admin=admin)
        return await self._cancel(job, payload, admin=admin)

    async def _send_copy(self, job: Job, user_id: int) -> ReactionOutcome:
        """✉️: the images, the full prompt with every parameter and the seed, the job id and a link, by DM."""
        info = await self.service.job_info(job.id, job.guild_id)
        images = await self.service.result_images(job)
        files = [discord.File(io.BytesIO(data), name) for name, data in await _dm_images(job, images)]
        prompt = format_request(info.request)
        if len(prompt) > DM_PROMPT_CHARS:  # the message shows it cut; the file holds all of it
            files.append(discord.File(io.BytesIO(prompt.encode()), f"imagine_{job.id}_prompt.txt"))
        try:
            channel = await self.bot.create_dm(discord.Object(user_id))
            await channel.send(result_dm_text(info), files=files, allowed_mentions=NO_MENTIONS)
        except discord.Forbidden as exc:
            log.info(
                "cannot DM user %s the result of job %s (their DMs are closed): %s", user_id, job.id, exc
            )
            return ReactionOutcome.DMS_CLOSED
        except discord.HTTPException as exc:
            log.warning("cannot DM user %s the result of job %s: %s", user_id, job.id, exc)
            return ReactionOutcome.FAILED
        log.info("sent the result of job %s to user %s by DM", job.id, user_id)
        return ReactionOutcome.SENT

    async def _remove_result(
        self, job: Job, payload: discord.RawReactionActionEvent, *, admin: bool
    ) -> ReactionOutcome:
        """❌ on a result: its owner or an admin deletes the message; the job and its images stay."""
        assert payload.guild_id is not None
        if not self.service.may_remove_result(
            job, guild_id=payload.guild_id, user_id=payload.user_id, admin=admin
        ):
            return ReactionOutcome.REFUSED
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await channel.get_partial_message(payload.message_id).delete()
        except discord.NotFound:
            pass  # deleted meanwhile
        except discord.HTTPException as exc:
            log.warning("cannot delete the result message %s of job %s: %s", payload.message_id, job.id, exc)
            return ReactionOutcome.FAILED
        log.info("user %s removed the result message of job %s", payload.user_id, job.id)
        return ReactionOutcome.REMOVED

    async def _cancel(
        self, job: Job, payload: discord.RawReactionActionEvent, *, admin: bool
    ) -> ReactionOutcome:
        """❌ on a status message: the one cancel rule of the Cancel button and /cancel; the status message
        then says the job is cancelled."""
        assert payload.guild_id is not None
        try:
            await self.service.cancel(job.id, guild_id=payload.guild_id, user_id=payload.user_id, admin=admin)
        except MemberError as exc:
            log.debug("❌ by user %s on job %s does nothing: %s", payload.user_id, job.id, exc)
            return ReactionOutcome.REFUSED
        return ReactionOutcome.CANCELLED


async def _dm_images(job: Job, images: list[bytes]) -> list[tuple[str, bytes]]:
    """The job's images as DM attachments (name, bytes), each fitted to its share of the upload limit."""

    def load() -> list[tuple[str, bytes]]:
        found = []
        share = max(1, DM_UPLOAD_LIMIT // max(1, len(images)))
        for index, image in enumerate(images, start=1):
            try:
                encoded = fit_to_limit(image, share)
            except ImageError as exc:
                log.warning("job %s: image %d cannot be sent by DM: %s", job.id, index, exc)
                continue
            name = f"imagine_{job.id}_{index}" if len(images) > 1 else f"imagine_{job.id}"
            found.append((f"{name}.{encoded.extension}", encoded.data))
        return found

    return await asyncio.to_thread(load)
