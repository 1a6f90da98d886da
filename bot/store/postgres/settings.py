"""PostgreSQL user settings: a member's saved defaults (model, aspect, style, negative prompt)."""

from __future__ import annotations

from typing import Final

import asyncpg

from bot.jobs import UserSettings
from bot.store.base import UNSET, Unset
from bot.store.postgres.connection import PostgresConnection

_SETTING_FIELDS: Final = ("model", "aspect", "style", "negative")


def _settings_from_row(row: asyncpg.Record) -> UserSettings:
    return UserSettings(
        user_id=int(row["user_id"]),
        model=row["model"],
        aspect=row["aspect"],
        style=row["style"],
        negative=row["negative"],
        updated_at=float(row["updated_at"]),
    )


class PostgresSettings(PostgresConnection):
    """The `user_settings` table of `PostgresStore` (see `Store` for the contract)."""

    async def get_user_settings(self, user_id: int) -> UserSettings | None:
        """Return the member's saved settings, or None if they never saved any."""
        rows = await self._fetch("SELECT * FROM user_settings WHERE user_id = $1", user_id)
        return _settings_from_row(rows[0]) if rows else None

    async def update_user_settings(
        self,
        user_id: int,
        *,
        model: str | Unset | None = UNSET,
        aspect: str | Unset | None = UNSET,
        style: str | Unset | None = UNSET,
        negative: str | Unset | None = UNSET,
    ) -> UserSettings:
        """Change some of the member's settings (None clears one; omitted ones stay)."""
        changes = {
            name: value
            for name, value in zip(_SETTING_FIELDS, (model, aspect, style, negative), strict=True)
            if value is not UNSET
        }
        values = {name: None for name in _SETTING_FIELDS} | changes
        updates = "".join(f"{name} = excluded.{name}, " for name in changes)
        sql = (
            "INSERT INTO user_settings (user_id, model, aspect, style, negative, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) "
            f"ON CONFLICT (user_id) DO UPDATE SET {updates}updated_at = excluded.updated_at RETURNING *"
        )
        now = self._clock()
        row = await self._run(
            lambda con: con.fetchrow(sql, user_id, *(values[name] for name in _SETTING_FIELDS), now),
            idempotent=True,
            transaction=False,
        )
        return _settings_from_row(row)

    async def clear_user_settings(self, user_id: int) -> bool:
        """Forget the member's settings; return whether there were any."""
        rows = await self._run(
            lambda con: con.fetch("DELETE FROM user_settings WHERE user_id = $1 RETURNING user_id", user_id),
            idempotent=False,
        )
        return bool(rows)
