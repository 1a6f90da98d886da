"""Rendering for /queue and /status, and the /queue page buttons (persistent, bound to the viewer)."""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import Any, Final

import discord

from bot.imagine_bot import ImagineBot
from bot.jobs import JobKind
from bot.queue_service import QueueEntry, QueuePage, StatusReport
from cogs._errors import send_ephemeral
from cogs._messages import NOT_YOUR_QUEUE, QUEUE_GUILD_ONLY, STATUS_WORDS
from cogs._permissions import is_admin

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


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with `…` (for Discord's length limits)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------ /queue


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_line(number: int, entry: QueueEntry, *, show_user: bool) -> str:
    """One row of /queue: `3. #42 · running on gpu0 (45%) · @user · a lighthouse…`."""
    if entry.position is not None:
        state = f"waiting, {_ordinal(entry.position)} in line"
    elif entry.backend:
        state = f"{STATUS_WORDS[entry.status]} on {discord.utils.escape_markdown(entry.backend)}"
        if entry.progress > 0:
            state += f" ({entry.progress:.0%})"
    else:
        state = STATUS_WORDS[entry.status]
    parts = [f"`#{entry.job_id}`", state]
    if show_user:
        parts.append(f"<@{entry.user_id}>")
    if entry.kind is not JobKind.IMAGINE:
        parts.append(f"[{entry.kind.value}]")
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(entry.excerpt))
    if text:
        parts.append(text)
    return f"**{number}.** " + " · ".join(parts)


def queue_embed(page: QueuePage, guild_name: str | None) -> discord.Embed:
    """The /queue embed: admins see the whole guild, members their own jobs."""
    if page.admin:
        title = f"Queue in {clip(guild_name, 200)}" if guild_name else "Queue in this server"
        empty = "Nothing is waiting or running in this server."
    else:
        title = "Your jobs in this server"
        empty = "You have no jobs waiting or running here. Start one with /imagine."
    lines = [
        queue_line(page.first_number + index, entry, show_user=page.admin)
        for index, entry in enumerate(page.entries)
    ]
    description = clip("\n".join(lines), _DESCRIPTION_LIMIT) if lines else empty
    embed = discord.Embed(title=title, description=description, colour=_QUEUE_COLOUR)
    embed.set_footer(
        text=f"Page {page.page + 1}/{page.pages} · {page.in_flight} running · {page.waiting} waiting"
    )
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
    lines = []
    for backend in report.backends:
        name = discord.utils.escape_markdown(backend.name)
        if backend.paused:
            parts = [f"🟠 **{name}** — up, paused after a failed prompt"]
        else:
            parts = [f"{'🟢' if backend.up else '🔴'} **{name}** — {'up' if backend.up else 'down'}"]
        if backend.version:
            parts.append(f"ComfyUI {discord.utils.escape_markdown(backend.version)}")
        if backend.up or backend.in_flight:
            parts.append(f"{backend.in_flight}/{backend.capacity} jobs")
        if backend.vram:
            parts.append(f"{'RAM (no GPU)' if backend.on_cpu else 'VRAM'} {backend.vram}")
        line = " · ".join(parts)
        if admin and backend.last_error:
            error = discord.utils.escape_markdown(clip(backend.last_error, 200))
            line += f"\n  last error: {error}"
        lines.append(line)
    up, count = report.backends_up, len(report.backends)
    if up == count:
        colour = discord.Colour.green()
    elif up:
        colour = discord.Colour.orange()
    else:
        colour = discord.Colour.red()
    description = clip("\n".join(lines), _DESCRIPTION_LIMIT) if lines else "No image servers are configured."
    embed = discord.Embed(title=f"Image servers: {up} of {count} up", description=description, colour=colour)
    embed.add_field(
        name="This server's queue",
        value=f"{report.waiting} waiting · {report.in_flight} running",
        inline=True,
    )
    embed.add_field(
        name="Today (since 00:00 UTC)",
        value=f"{report.completed_today} done · {report.failed_today} failed · "
        f"{report.cancelled_today} cancelled",
        inline=True,
    )
    if up == 0 and count:
        embed.set_footer(text="New jobs wait in the queue and start when an image server is back.")
    return embed
