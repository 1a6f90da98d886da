"""Backend leases: one holder drives a backend at a time; an expired or released lease can be taken.

Engine-neutral without a hand-moved clock: PostgreSQL reads lease times from the database server's
clock (the processes sharing it may run on hosts whose clocks disagree), so time is not moved here;
a lease of 0 seconds is one that has already run out, a long one is one that still runs.
"""

from __future__ import annotations

from bot.store import Store
from tests.store.helpers import FakeClock
from tests.store_engines import StoreEngine

RUNNING = 600.0  # seconds: a lease that outlasts any test
EXPIRED = 0.0  # seconds: a lease that runs out at once


async def test_a_free_backend_goes_to_the_first_holder_and_not_to_a_second(store: Store) -> None:
    assert await store.acquire_backend("gpu0", "process-a", 15)
    assert not await store.acquire_backend("gpu0", "process-b", 15)
    leases = await store.backend_leases()
    assert leases["gpu0"].holder == "process-a"


async def test_the_holder_renews_its_lease(store: Store) -> None:
    assert await store.acquire_backend("gpu0", "process-a", 15)
    first = (await store.backend_leases())["gpu0"].expires_at
    assert await store.acquire_backend("gpu0", "process-a", RUNNING)
    assert (await store.backend_leases())["gpu0"].expires_at > first + RUNNING - 15 - 1
    assert not await store.acquire_backend("gpu0", "process-b", 15)


async def test_the_holder_renews_even_a_lease_that_ran_out_while_nobody_took_it(store: Store) -> None:
    assert await store.acquire_backend("gpu0", "process-a", EXPIRED)
    assert await store.acquire_backend("gpu0", "process-a", RUNNING)
    assert not await store.acquire_backend("gpu0", "process-b", 15)
    assert (await store.backend_leases())["gpu0"].holder == "process-a"


async def test_an_expired_lease_is_taken_over(store: Store) -> None:
    assert await store.acquire_backend("gpu0", "process-a", EXPIRED)
    assert await store.acquire_backend("gpu0", "process-b", 15)
    assert (await store.backend_leases())["gpu0"].holder == "process-b"
    assert not await store.acquire_backend("gpu0", "process-a", 15)


async def test_release_hands_every_backend_of_a_holder_over_at_once(store: Store) -> None:
    for backend in ("gpu0", "gpu1"):
        assert await store.acquire_backend(backend, "process-a", 15)
    assert await store.acquire_backend("gpu2", "process-b", 15)
    await store.release_backends("process-a")
    assert set(await store.backend_leases()) == {"gpu2"}
    assert await store.acquire_backend("gpu0", "process-b", 15)
    assert await store.acquire_backend("gpu1", "process-c", 15)


async def test_leases_are_shared_by_every_connection_to_the_database(
    store: Store, location: str, store_engine: StoreEngine, clock: FakeClock
) -> None:
    other = await store_engine.open(location, clock=clock)
    try:
        assert await store.acquire_backend("gpu0", "process-a", RUNNING)
        assert not await other.acquire_backend("gpu0", "process-b", RUNNING)
        assert (await other.backend_leases())["gpu0"].holder == "process-a"
    finally:
        await other.close()
