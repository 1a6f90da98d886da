"""SQLite backend leases: who drives each ComfyUI backend (one process per file, so always its own)."""

from __future__ import annotations

from bot.store.base import BackendLease
from bot.store.sqlite.connection import SqliteConnection


class SqliteLeases(SqliteConnection):
    """The `backend_leases` table of `SqliteStore` (see `Store` for the contract)."""

    async def acquire_backend(self, backend: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease unless another holder's lease still runs."""
        now = self._clock()
        async with self._transaction() as db:
            rows = await self._rows(
                db,
                "INSERT INTO backend_leases (backend, holder, expires_at) VALUES (:backend, :holder, :until) "
                "ON CONFLICT (backend) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE backend_leases.holder = excluded.holder OR backend_leases.expires_at <= :now "
                "RETURNING holder",
                {"backend": backend, "holder": holder, "until": now + ttl_s, "now": now},
            )
        return bool(rows)

    async def release_backends(self, holder: str) -> None:
        """Delete the holder's leases."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM backend_leases WHERE holder = ?", (holder,))

    async def backend_leases(self) -> dict[str, BackendLease]:
        """Every lease row."""
        rows = await self._fetch("SELECT backend, holder, expires_at FROM backend_leases ORDER BY backend")
        return {
            str(r["backend"]): BackendLease(str(r["backend"]), str(r["holder"]), float(r["expires_at"]))
            for r in rows
        }
