"""Store fixtures: a fresh store of each engine (see `store_engine`), its location, a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.store.helpers import FakeClock
from tests.store_engines import StoreEngine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def location(store_engine: StoreEngine, tmp_path: Path) -> str:
    """Where this test's database lives, for tests that open more than one connection to it."""
    return store_engine.location(tmp_path)


@pytest.fixture
async def store(store_engine: StoreEngine, location: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await store_engine.open(location, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """An SQLite file in folders that do not exist yet, for the SQLite-only tests."""
    return tmp_path / "state" / "nested" / "jobs.db"
