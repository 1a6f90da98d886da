"""Rendering for /queue and /status, and the /queue page buttons (persistent, bound to the viewer)."""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import Any, Final

import discord

from bot.imagine_bot import ImagineBot
from bot.queue_service import QueuePage, StatusReport
from cogs._errors import send_ephemeral
from cogs._permissions import is_admin
from cogs._words.panels import (
    ALL_BACKENDS_DOWN,
    NO_BACKENDS,
    QUEUE_EMPTY_ADMIN,
    QUEUE_EMPTY_MEMBER,
    QUEUE_TITLE_MEMBER,
    STATUS_QUEUE_FIELD,
    STATUS_TODAY_FIELD,
    backend_line,
    backends_title,
    queue_counts_text,
    queue_footer,
    queue_line,
    queue_title_admin,
    today_counts_text,
)
from cogs._words.refusals import NOT_YOUR_QUEUE, QUEUE_GUILD_ONLY
from cogs._words.text import clip

log = logging.getLogger(__name__)

_DESCRIPTION_LIMIT = 4096
_QUEUE_COLOUR = discord.Colour.blurple()


class PageMove(StrEnum):
    """Where a /queue page button goes; its value is the last part of the button's custom_id."""

    PREV = "prev"
    NEXT = "next"
    REFRESH = "refresh"


_PAGE_EMOJI: Final = {PageMove.PREV: "◀️", PageMove.NEXT: "▶️", PageMove.REFRESH: "🔄"}
_QUEUE_PREFIX: Final = "queue"
_QUEUE_TEMPLATE: Final = (
    rf"{_QUEUE_PREFIX}:(?P<viewer>[0-9]{{1,20}}):(?P<page>[0-9]{{1,6}}):(?P<move>{'|'.join(PageMove)})"
)


# ------------------------------------------------------------------------------------------ /queue


def queue_embed(page: QueuePage, guild_name: str | None) -> discord.Embed:
    """The /queue embed: admins see the whole guild, members their own jobs."""
    if page.admin:
        title = queue_title_admin(clip(guild_name, 200) if guild_name else None)
        empty = QUEUE_EMPTY_ADMIN
    else:
        title = QUEUE_TITLE_MEMBER
        empty = QUEUE_EMPTY_MEMBER
    lines = [
        queue_line(page.first_number + index, entry, show_user=page.admin)
        for index, entry in enumerate(page.entries)
    ]
    description = clip("\n".join(lines), _DESCRIPTION_LIMIT) if lines else empty
    embed = discord.Embed(title=title, description=description, colour=_QUEUE_COLOUR)
    embed.set_footer(text=queue_footer(page))
    return embed


class QueuePageButton(discord.ui.DynamicItem[discord.ui.Button], template=_QUEUE_TEMPLATE):
    """◀ / ▶ / 🔄 under /queue; the custom_id carries the viewer and the page, so it survives restarts."""

    def __init__(self, viewer_id: int, page: int, move: PageMove, *, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=_PAGE_EMOJI[move],
                style=discord.ButtonStyle.secondary,
                custom_id=f"{_QUEUE_PREFIX}:{viewer_id}:{max(page, 0)}:{move}",
                disabled=disabled,
            )
        )
        self.viewer_id = viewer_id
        self.page = max(page, 0)
        self.move = move

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> QueuePageButton:
        """Rebuild the button from its custom_id (after a restart too)."""
        return cls(int(match["viewer"]), int(match["page"]), PageMove(match["move"]))

    # discord.py types an item's callback for any client (a method-level ClientT), but these items are
    # only ever registered on ImagineBot: narrowing keeps interaction.client typed.
    async def callback(self, interaction: discord.Interaction[ImagineBot]) -> None:  # type: ignore[override]
        """Show the page this button points at, to the person who ran /queue only."""
        if interaction.user.id != self.viewer_id:
            await send_ephemeral(interaction, NOT_YOUR_QUEUE)
            return
        if interaction.guild_id is None:
            await send_ephemeral(interaction, QUEUE_GUILD_ONLY)
            return
        bot = interaction.client
        admin = is_admin(interaction.user, bot.config.discord.admin_role_ids)
        page = await bot.services.queue.queue_page(
            interaction.guild_id, viewer_id=self.viewer_id, admin=admin, page=self.page
        )
        guild_name = interaction.guild.name if interaction.guild else None
        await interaction.response.edit_message(
            embed=queue_embed(page, guild_name), view=queue_view(page, self.viewer_id)
        )


def queue_view(page: QueuePage, viewer_id: int) -> discord.ui.View:
    """◀ 🔄 ▶ for a /queue page, bound to the viewer."""
    view = discord.ui.View(timeout=None)
    view.add_item(QueuePageButton(viewer_id, page.page - 1, PageMove.PREV, disabled=not page.has_previous))
    view.add_item(QueuePageButton(viewer_id, page.page, PageMove.REFRESH))
    view.add_item(QueuePageButton(viewer_id, page.page + 1, PageMove.NEXT, disabled=not page.has_next))
    return view


# ------------------------------------------------------------------------------------------ /status


def status_embed(report: StatusReport, *, admin: bool) -> discord.Embed:
    """The /status embed; last errors (which may name internal addresses) are shown to admins only."""
    lines = [backend_line(backend, admin=admin) for backend in report.backends]
    up, count = report.backends_up, len(report.backends)
    if up == count:
        colour = discord.Colour.green()
    elif up:
        colour = discord.Colour.orange()
    else:
        colour = discord.Colour.red()
    description = clip("\n".join(lines), _DESCRIPTION_LIMIT) if lines else NO_BACKENDS
    embed = discord.Embed(title=backends_title(report), description=description, colour=colour)
    embed.add_field(name=STATUS_QUEUE_FIELD, value=queue_counts_text(report), inline=True)
    embed.add_field(name=STATUS_TODAY_FIELD, value=today_counts_text(report), inline=True)
    if up == 0 and count:
        embed.set_footer(text=ALL_BACKENDS_DOWN)
    return embed
