"""Backend leases: one holder drives a backend at a time; an expired or released lease can be taken."""

from __future__ import annotations

from bot.store import Store
from tests.store.helpers import FakeClock
from tests.store_engines import StoreEngine


async def test_a_free_backend_goes_to_the_first_holder_and_not_to_a_second(store: Store) -> None:
    assert await store.acquire_backend("gpu0", "process-a", 15)
    assert not await store.acquire_backend("gpu0", "process-b", 15)
    leases = await store.backend_leases()
    assert leases["gpu0"].holder == "process-a"


async def test_the_holder_renews_its_lease(store: Store, clock: FakeClock) -> None:
    assert await store.acquire_backend("gpu0", "process-a", 15)
    first = (await store.backend_leases())["gpu0"].expires_at
    clock.now += 10
    assert await store.acquire_backend("gpu0", "process-a", 15)
    assert (await store.backend_leases())["gpu0"].expires_at > first + 9
    clock.now += 10  # 20 s after the first lease, 10 s after the renewal: still running
    assert not await store.acquire_backend("gpu0", "process-b", 15)


async def test_an_expired_lease_is_taken_over(store: Store, clock: FakeClock) -> None:
    assert await store.acquire_backend("gpu0", "process-a", 15)
    clock.now += 15.5
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
        assert await store.acquire_backend("gpu0", "process-a", 600)
        assert not await other.acquire_backend("gpu0", "process-b", 600)
        assert (await other.backend_leases())["gpu0"].holder == "process-a"
    finally:
        await other.close()
