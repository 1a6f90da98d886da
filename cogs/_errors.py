"""Errors shown to members: what they did wrong, ephemerally; anything else logged under a short reference."""

from __future__ import annotations

import logging
import math
import secrets

import discord
from discord import app_commands

from bot.imagine_service import UserError
from bot.jobs import LimitExceeded, LimitKind
from comfy.params import ParamError
from comfy.render import RenderError

log = logging.getLogger(__name__)

# Exceptions the member caused: their text is written for the member (a LimitExceeded's by `limit_text`).
MEMBER_ERRORS: tuple[type[BaseException], ...] = (UserError, ParamError, LimitExceeded, RenderError)
MAX_MESSAGE = 2000


def new_reference() -> str:
    """A short id (6 hex characters) a member can quote to an admin, who finds it in the log."""
    return secrets.token_hex(3)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def limit_text(exc: LimitExceeded) -> str:
    """What a member reads when a `[limits]` cap refused their command: what is allowed, and what to do."""
    cap, asked, counted = exc.allowed, exc.requested, exc.current
    if exc.kind is LimitKind.MAX_JOBS_PER_COMMAND:
        return f"One command can make at most {_plural(cap, 'job')}; this one asked for {asked}."
    if exc.kind is LimitKind.PER_USER_PER_MINUTE:
        retry = max(1, math.ceil(exc.retry_after_s or 0.0))
        return f"Slow down: at most {_plural(cap, 'command')} a minute. Try again in {retry} s."
    if exc.kind is LimitKind.PER_USER_ACTIVE:
        if counted >= cap:
            return (
                f"You already have {_plural(counted, 'job')} waiting or running; "
                f"the limit is {cap}. Wait for one to finish."
            )
        return (
            f"You have {_plural(counted, 'job')} waiting or running and this command adds "
            f"{asked}; the limit is {cap}. Wait for one to finish, or ask for fewer."
        )
    if counted >= cap:
        return (
            f"This server's queue is full: {_plural(counted, 'job')} waiting, "
            f"the limit is {cap}. Try again once some have started."
        )
    return (
        f"This server's queue has room for {_plural(cap - counted, 'more job')} and "
        f"this command adds {asked}. Try again once some have started, or ask for fewer."
    )


def member_text(error: BaseException) -> str | None:
    """The member-facing text of an expected error, None for an unexpected one."""
    if isinstance(error, LimitExceeded):
        return limit_text(error)
    if isinstance(error, MEMBER_ERRORS):
        return str(error) or "That can't be done."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server, not in direct messages."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {max(1, round(error.retry_after))} s."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this here."
    return None


def _describe(interaction: discord.Interaction[discord.Client]) -> str:
    command = interaction.command.qualified_name if interaction.command else None
    data = interaction.data or {}
    what = f"/{command}" if command else f"component {data.get('custom_id', '?')}"
    return f"{what} by user {interaction.user.id} in guild {interaction.guild_id}"


async def report_error(interaction: discord.Interaction[discord.Client], error: BaseException) -> None:
    """Tell the member what went wrong, ephemerally; log unexpected errors with a reference id."""
    text = member_text(error)
    if text is None:
        reference = new_reference()
        log.error(
            "unexpected error in %s (ref %s)",
            _describe(interaction),
            reference,
            exc_info=(type(error), error, error.__traceback__),
        )
        text = f"Something went wrong (ref {reference}); an admin can look it up in the log."
    await send_ephemeral(interaction, text)


async def send_ephemeral(interaction: discord.Interaction[discord.Client], text: str) -> None:
    """Answer the member only they can see: the response if not given yet, else a followup."""
    text = text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        log.warning("could not answer %s: %s", _describe(interaction), exc)


async def on_app_command_error(
    interaction: discord.Interaction[discord.Client], error: app_commands.AppCommandError
) -> None:
    """The command tree's error handler: unwraps CommandInvokeError and reports the cause."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    await report_error(interaction, original)
