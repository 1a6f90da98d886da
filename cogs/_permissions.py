"""Who counts as an admin of the bot in a guild: Manage Server, or a role in `discord.admin_role_ids`."""

from __future__ import annotations

from collections.abc import Collection

import discord


def is_admin(user: discord.abc.User, admin_role_ids: Collection[int]) -> bool:
    """True for members with Manage Server (or Administrator) or one of the configured admin roles."""
    if not isinstance(user, discord.Member):
        return False
    if user.guild_permissions.manage_guild or user.guild_permissions.administrator:
        return True
    return any(role.id in admin_role_ids for role in user.roles)
