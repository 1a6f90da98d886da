"""PostgreSQL backend leases: which of the processes sharing the database drives each ComfyUI backend."""

from __future__ import annotations

from typing import Final

from bot.store.base import BackendLease
from bot.store.postgres.connection import DB_NOW, PostgresConnection

# Taken when free, expired or already the holder's (a renewal); ON CONFLICT locks the row, so two
# processes asking at once are decided one after the other.
_ACQUIRE_SQL: Final = f"""
    INSERT INTO backend_leases AS l (backend, holder, expires_at)
    VALUES ($1, $2, {DB_NOW} + $3::double precision)
    ON CONFLICT (backend) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE l.holder = excluded.holder OR l.expires_at <= {DB_NOW}
    RETURNING holder
"""


class PostgresLeases(PostgresConnection):
    """The `backend_leases` table of `PostgresStore` (see `Store` for the contract).

    Lease times are the database server's clock (`clock_timestamp()`), never the store's `clock`:
    the processes sharing the database may run on hosts whose clocks disagree, and "expired" must
    mean the same moment to all of them. `expires_at` is unix seconds on that clock.
    """

    async def acquire_backend(self, backend: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease unless another holder's lease still runs.

        "Now" and the new expiry (`ttl_s` from now) are read from the database server's clock, not
        the store's `clock`, so processes on hosts with different clocks agree on when a lease ends.
        Retried once on a lost connection: asking again is harmless (a renewal of one's own lease).
        """
        row = await self._run(
            lambda con: con.fetchrow(_ACQUIRE_SQL, backend, holder, ttl_s), idempotent=True, transaction=False
        )
        return row is not None

    async def release_backends(self, holder: str) -> None:
        """Delete the holder's leases."""
        await self._run(
            lambda con: con.execute("DELETE FROM backend_leases WHERE holder = $1", holder),
            idempotent=True,
            transaction=False,
        )

    async def backend_leases(self) -> dict[str, BackendLease]:
        """Every lease row (`expires_at` on the database server's clock)."""
        rows = await self._fetch("SELECT backend, holder, expires_at FROM backend_leases ORDER BY backend")
        return {
            str(r["backend"]): BackendLease(str(r["backend"]), str(r["holder"]), float(r["expires_at"]))
            for r in rows
        }
