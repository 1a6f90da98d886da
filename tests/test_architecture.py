"""The layers keep their direction (cogs -> bot -> comfy), read from the imports with ast."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Only these bot/ modules may import discord: the entry point and the Bot subclass.
DISCORD_ALLOWED_IN_BOT = {"__main__.py", "imagine_bot.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("comfy"), ids=lambda p: p.name)
def test_comfy_imports_nothing_from_discord_bot_or_cogs(path: Path) -> None:
    assert not _imports(path) & {"discord", "bot", "cogs"}


@pytest.mark.parametrize("path", _modules("bot"), ids=lambda p: p.name)
def test_bot_never_imports_cogs_and_only_the_bot_class_imports_discord(path: Path) -> None:
    imports = _imports(path)
    assert "cogs" not in imports
    if path.name not in DISCORD_ALLOWED_IN_BOT:
        assert "discord" not in imports, (
            f"{path.name} imports discord; keep Discord in cogs/ or the Bot class"
        )


def _extension_modules() -> list[Path]:
    return [p for p in _modules("cogs") if not p.name.startswith("_")]


def test_every_cog_extension_has_an_async_setup() -> None:
    for path in _extension_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        setups = [n for n in tree.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "setup"]
        assert setups, f"{path} is an extension module without `async def setup(bot)`"


def test_every_listed_extension_exists_and_imports() -> None:
    from bot.imagine_bot import DEFAULT_EXTENSIONS

    listed = set(DEFAULT_EXTENSIONS)
    found = {f"cogs.{p.stem}" for p in _extension_modules()}
    assert listed == found, "DEFAULT_EXTENSIONS and the extension modules in cogs/ differ"
    for name in listed:
        assert hasattr(importlib.import_module(name), "setup")
