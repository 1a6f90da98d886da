"""Shared fixtures: config files written into tmp_path, a fake ComfyUI server, the job store engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fakes.comfy_server import FakeComfyUI
from tests.store_engines import STORE_ENGINES, StoreEngine

# PostgreSQL's fixtures (pg_databases, pg_server, pg_url): one server per session, started on first use.
pytest_plugins = ["tests.pg", "tests.s3"]

MINIMAL_CONFIG = """
[discord]
token = ""

[storage]
database = "data/test.db"
output_dir = "data/out"

[[backends]]
name = "gpu0"
url = "{url}"

[[models]]
name = "tiny"
checkpoint = "random_sd15_tiny.safetensors"
width = 512
height = 512
steps = 4
cfg = 7.0
sampler = "euler"
scheduler = "normal"
negative = "blurry"
"""


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file into tmp_path; `url` is the backend URL, `extra` is appended TOML."""

    def write(url: str = "http://127.0.0.1:9", extra: str = "", name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(MINIMAL_CONFIG.format(url=url) + extra, encoding="utf-8")
        return path

    return write


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    """A fake ComfyUI on loopback (test files about Discord override `fake` with a fake Discord)."""
    async with FakeComfyUI() as server:
        yield server


@pytest.fixture(params=sorted(STORE_ENGINES))
async def store_engine(request: pytest.FixtureRequest) -> AsyncIterator[StoreEngine]:
    """Each database engine of the job store in turn: store tests run once per engine."""
    engine = STORE_ENGINES[request.param](request)
    try:
        yield engine
    finally:
        await engine.close()
