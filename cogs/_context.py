"""What the imagine extension's commands and buttons share, found through the loaded cog."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.imagine_service import ImagineService

if TYPE_CHECKING:
    from cogs._presenter import Presenter

COG_NAME = "Imagine"


@dataclass(frozen=True, slots=True)
class ImagineContext:
    """The service, the presenter and who counts as an admin, for one loaded imagine extension."""

    service: ImagineService
    presenter: Presenter
    admin_role_ids: Collection[int]


class ExtensionNotLoaded(RuntimeError):
    """A button was pressed while the imagine extension is not loaded."""


def context_of(client: discord.Client) -> ImagineContext:
    """The context of the loaded imagine cog (buttons keep no state of their own)."""
    cog = client.get_cog(COG_NAME) if hasattr(client, "get_cog") else None
    context = getattr(cog, "context", None)
    if not isinstance(context, ImagineContext):
        raise ExtensionNotLoaded("the imagine extension is not loaded")
    return context
