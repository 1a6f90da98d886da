"""Which backends this process drives: leases in the database, taken, renewed and handed over.

With several bot processes on one PostgreSQL database, each ComfyUI backend is driven by exactly one of
them. A process renews its leases every third of `lease_s`; when it dies, its leases run out and another
process takes the backends over (and re-attaches to their prompts, as a restart does). A clean shutdown
releases them at once. With SQLite there is one process (bot.instance_lock), so it always holds them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bot.backends import Backend
from bot.store import Store

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Keeps `Backend.held` true exactly while this process may drive the backend."""

    def __init__(
        self,
        *,
        store: Store,
        backends: Sequence[Backend],
        holder: str,
        lease_s: float,
        on_gained: Callable[[Backend], Awaitable[None]],
        on_lost: Callable[[Backend], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.backends = list(backends)
        self.holder = holder
        self.lease_s = lease_s
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._clock = clock
        self._renewed_at: dict[str, float] = {}
        self._change = asyncio.Event()

    @property
    def interval_s(self) -> float:
        """How often leases are renewed (and free ones looked for)."""
        return self.lease_s / 3

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, checking it whenever a backend is gained or lost."""
        while not predicate():
            await self._change.wait()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def run(self) -> None:
        """Renew and take leases every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.renew()
            except Exception:
                log.exception("renewing backend leases failed; trying again in %g s", self.interval_s)

    async def renew(self) -> None:
        """One round: renew the leases held, take the free or expired ones, let go of lost ones."""
        for backend in self.backends:
            asked_at = self._clock()
            try:
                granted: bool | None = await self.store.acquire_backend(
                    backend.name, self.holder, self.lease_s
                )
            except Exception as exc:
                granted = None
                log.warning("cannot renew the lease of backend %s: %s", backend.name, exc)
            if granted:
                self._renewed_at[backend.name] = asked_at
                if not backend.held:
                    backend.held = True
                    log.info("driving backend %s (lease holder %s)", backend.name, self.holder)
                    await self._on_gained(backend)
                    self._changed()
            elif backend.held and (
                granted is False or self._clock() - self._renewed_at.get(backend.name, 0.0) >= self.lease_s
            ):
                # Another process has it, or our lease ran out while the database was unreachable.
                backend.held = False
                log.warning("no longer driving backend %s: its lease went to another process", backend.name)
                self._on_lost(backend)
                self._changed()

    async def release(self) -> None:
        """Hand every backend over at once (a clean shutdown); the next holder re-attaches to its prompts."""
        for backend in self.backends:
            backend.held = False
        self._changed()
        try:
            await self.store.release_backends(self.holder)
        except Exception as exc:
            log.warning("cannot release backend leases (they expire in %g s): %s", self.lease_s, exc)
