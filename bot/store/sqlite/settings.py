"""SQLite user settings: a member's saved defaults (model, aspect, style, negative prompt), ping and Remix."""

from __future__ import annotations

from typing import Final

from bot.jobs import UserSettings
from bot.store.base import UNSET, Unset
from bot.store.sqlite.connection import SqliteConnection

_TEXT_FIELDS: Final = ("model", "aspect", "style", "negative")
# What a new row holds for a setting the member did not give.
_DEFAULTS: Final = {"model": None, "aspect": None, "style": None, "negative": None, "ping": 1, "remix": 0}


class SqliteSettings(SqliteConnection):
    """The `user_settings` table of `SqliteStore` (see `Store` for the contract)."""

    async def get_user_settings(self, user_id: int) -> UserSettings | None:
        """Return the member's saved settings, or None if they never saved any."""
        rows = await self._fetch("SELECT * FROM user_settings WHERE user_id = ?", (user_id,))
        return UserSettings.from_row(rows[0]) if rows else None

    async def update_user_settings(
        self,
        user_id: int,
        *,
        model: str | Unset | None = UNSET,
        aspect: str | Unset | None = UNSET,
        style: str | Unset | None = UNSET,
        negative: str | Unset | None = UNSET,
        ping: bool | Unset = UNSET,
        remix: bool | Unset = UNSET,
    ) -> UserSettings:
        """Change some of the member's settings (None clears one; omitted ones stay)."""
        changes: dict[str, str | int | None] = {
            name: value
            for name, value in zip(_TEXT_FIELDS, (model, aspect, style, negative), strict=True)
            if value is not UNSET
        }
        if ping is not UNSET:
            changes["ping"] = int(bool(ping))
        if remix is not UNSET:
            changes["remix"] = int(bool(remix))
        values = _DEFAULTS | changes
        updates = ", ".join(f"{name} = excluded.{name}" for name in changes) or "user_id = user_id"
        async with self._transaction() as db:
            rows = await self._rows(
                db,
                "INSERT INTO user_settings (user_id, model, aspect, style, negative, ping, remix, updated_at) "
                "VALUES (:user_id, :model, :aspect, :style, :negative, :ping, :remix, :now) "
                f"ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at "
                "RETURNING *",
                {**values, "user_id": user_id, "now": self._clock()},
            )
        return UserSettings.from_row(rows[0])

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        async with self._transaction() as db:
            rows = await self._rows(
                db, "DELETE FROM user_settings WHERE user_id = ? RETURNING user_id", (user_id,)
            )
        return bool(rows)
