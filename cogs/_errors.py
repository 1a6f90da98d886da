"""Errors shown to members: what they did wrong, ephemerally; anything else logged under a short reference."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import discord
from discord import app_commands

from bot.errors import MemberError
from bot.jobs import LimitExceeded
from cogs._words.refusals import (
    CHECK_FAILED,
    SERVER_ONLY_COMMAND,
    TYPED_TEXT_TITLE,
    Where,
    cooldown_text,
    limit_text,
    refusal_text,
    typed_text,
    unexpected_error_text,
)
from comfy.params import ParamError
from comfy.render import RenderError

log = logging.getLogger(__name__)

MAX_MESSAGE = 2000


def typed_text_embed(text: str) -> discord.Embed:
    """What a member typed into a modal, in a code block to copy (an embed holds 4096 characters, a modal's
    text input 4000); as plain text when it holds a code fence itself."""
    return discord.Embed(title=TYPED_TEXT_TITLE, description=typed_text(text)[:4096])


def new_reference() -> str:
    """A short id (6 hex characters) a member can quote to an admin, who finds it in the log."""
    return secrets.token_hex(3)


def member_text(error: BaseException, where: Where = Where.ANY) -> str | None:
    """The member-facing text of an expected error (`where` the member acted), None for an unexpected one."""
    if isinstance(error, MemberError | ParamError | RenderError):
        return refusal_text(error, where)
    if isinstance(error, LimitExceeded):
        return limit_text(error)
    if isinstance(error, app_commands.NoPrivateMessage):
        return SERVER_ONLY_COMMAND
    if isinstance(error, app_commands.CommandOnCooldown):
        return cooldown_text(error.retry_after)
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or CHECK_FAILED
    return None


def _describe(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command.qualified_name if interaction.command else None
    data: Mapping[str, Any] = interaction.data or {}
    what = f"/{command}" if command else f"component {data.get('custom_id', '?')}"
    return f"{what} by user {interaction.user.id} in guild {interaction.guild_id}"


async def report_error(
    interaction: discord.Interaction[Any],
    error: BaseException,
    where: Where = Where.ANY,
    *,
    quote: str | None = None,
) -> None:
    """Tell the member what went wrong, ephemerally; log unexpected errors with a reference id.

    The one way every refusal reaches a member, from commands and components alike. `quote` is what they
    typed into a modal, shown again under the refusal so nothing is lost (a modal closes on submit).
    """
    text = member_text(error, where)
    if text is None:
        reference = new_reference()
        log.error(
            "unexpected error in %s (ref %s)",
            _describe(interaction),
            reference,
            exc_info=(type(error), error, error.__traceback__),
        )
        text = unexpected_error_text(reference)
    await send_ephemeral(interaction, text, embed=typed_text_embed(quote) if quote is not None else None)


async def send_ephemeral(
    interaction: discord.Interaction[Any], text: str, *, embed: discord.Embed | None = None
) -> None:
    """Answer the member only they can see: the response if not given yet, else a followup."""
    text = text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
    shown = embed if embed is not None else discord.utils.MISSING  # discord.py's "no embed"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none(), embed=shown
            )
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none(), embed=shown
            )
    except discord.HTTPException as exc:
        log.warning("could not answer %s: %s", _describe(interaction), exc)


async def on_app_command_error(
    interaction: discord.Interaction[discord.Client], error: app_commands.AppCommandError
) -> None:
    """The command tree's error handler: unwraps CommandInvokeError and reports the cause."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    await report_error(interaction, original)
