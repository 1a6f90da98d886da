"""Every engine implements the whole `Store` protocol, and a reopened store finds what it had."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from bot.config import DatabaseUrl
from bot.store import PostgresStore, SqliteStore, Store, load_pg_migrations, open_store
from tests.store.helpers import FakeClock, enqueue, new_job
from tests.store_engines import StoreEngine

ROOT = Path(__file__).resolve().parents[2]


def _protocol_methods() -> list[str]:
    return sorted(
        name
        for name, value in vars(Store).items()
        if callable(value) or isinstance(value, classmethod)
        if not name.startswith("_") or name in {"__aenter__", "__aexit__"}
    )


def _store_calls_in(folder: Path) -> set[str]:
    """Names called on anything named `store` (`store.x(...)`, `self.store.x(...)`, `services.store.x(...)`)."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(called := node.func, ast.Attribute):
                owner = called.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if owner_name in {"store", "_store"}:
                    names.add(called.attr)
    return names


def test_the_protocol_lists_every_store_method_the_app_and_benchmarks_call() -> None:
    called = set().union(*(_store_calls_in(ROOT / folder) for folder in ("bot", "cogs", "bench")))
    assert {"enqueue_many", "claim_next", "get_user_settings", "image_prompt_files_in_use"} <= called
    assert called <= set(_protocol_methods())


async def test_the_store_has_every_method_of_the_protocol_with_the_same_parameters(store: Store) -> None:
    engine = type(store)
    for name in _protocol_methods():
        promised = inspect.signature(getattr(Store, name)).parameters
        given = inspect.signature(getattr(engine, name)).parameters
        assert inspect.iscoroutinefunction(getattr(engine, name)), name
        for parameter in promised.values():
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                continue  # the name is the engine's own (a path, a DSN)
            assert parameter.name in given, f"{engine.__name__}.{name} lacks {parameter.name}"
            assert given[parameter.name].kind == parameter.kind, f"{name}({parameter.name})"
            assert given[parameter.name].default == parameter.default, f"{name}({parameter.name})"
        extra = [p for p in given.values() if p.name not in promised and p.kind is not p.POSITIONAL_ONLY]
        assert all(p.default is not p.empty for p in extra), f"{engine.__name__}.{name} needs more: {extra}"


async def test_reopening_a_current_database_keeps_jobs_and_version(
    store_engine: StoreEngine, location: str, clock: FakeClock
) -> None:
    async with await store_engine.open(location, clock=clock) as store:
        job = await enqueue(store, new_job())
        version = await store.schema_version()
    async with await store_engine.open(location, clock=clock) as store:
        assert await store.schema_version() == version
        assert await store.get(job.id) == job


async def test_open_store_opens_sqlite_for_a_path_and_postgresql_for_a_database_url(
    tmp_path: Path, pg_url: str
) -> None:
    async with await open_store(tmp_path / "state" / "jobs.db") as store:
        assert isinstance(store, SqliteStore)
    async with await open_store(str(tmp_path / "state" / "other.db")) as store:
        assert isinstance(store, SqliteStore)
    async with await open_store(DatabaseUrl(pg_url)) as store:
        assert isinstance(store, PostgresStore)
        assert await store.schema_version() == len(load_pg_migrations())
    async with await open_store(pg_url) as store:  # a URL in a plain string is no file name
        assert isinstance(store, PostgresStore)
