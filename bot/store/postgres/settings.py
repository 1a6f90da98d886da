"""PostgreSQL user settings: a member's saved defaults (model, aspect, style, negative prompt) and switches."""

from __future__ import annotations

from typing import Final

from bot.jobs import UserSettings
from bot.store.base import UNSET, Unset
from bot.store.postgres.connection import PostgresConnection

_TEXT_FIELDS: Final = ("model", "aspect", "style", "negative")
# Every column a new row gets, with its default (the switches have the defaults of UserSettings).
_DEFAULTS: Final[dict[str, object]] = {
    "model": None,
    "aspect": None,
    "style": None,
    "negative": None,
    "ping": True,
    "remix": False,
}


class PostgresSettings(PostgresConnection):
    """The `user_settings` table of `PostgresStore` (see `Store` for the contract)."""

    async def get_user_settings(self, user_id: int) -> UserSettings | None:
        """Return the member's saved settings, or None if they never saved any."""
        rows = await self._fetch("SELECT * FROM user_settings WHERE user_id = $1", user_id)
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
        changes: dict[str, object] = {
            name: value
            for name, value in zip(_TEXT_FIELDS, (model, aspect, style, negative), strict=True)
            if value is not UNSET
        }
        if ping is not UNSET:
            changes["ping"] = bool(ping)
        if remix is not UNSET:
            changes["remix"] = bool(remix)
        values = _DEFAULTS | changes
        columns = list(_DEFAULTS)
        updates = "".join(f"{name} = excluded.{name}, " for name in changes)
        placeholders = ", ".join(f"${i}" for i in range(2, len(columns) + 3))
        sql = (
            f"INSERT INTO user_settings (user_id, {', '.join(columns)}, updated_at) "
            f"VALUES ($1, {placeholders}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}updated_at = excluded.updated_at RETURNING *"
        )
        now = self._clock()
        row = await self._run(
            lambda con: con.fetchrow(sql, user_id, *(values[name] for name in columns), now),
            idempotent=True,
            transaction=False,
        )
        return UserSettings.from_row(row)

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        rows = await self._run(
            lambda con: con.fetch("DELETE FROM user_settings WHERE user_id = $1 RETURNING user_id", user_id),
            idempotent=False,
        )
        return bool(rows)
