"""Numbered SQL migration files (`NNNN_name.sql`), read from a folder of the `bot` package by either engine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL migration file."""

    version: int
    name: str
    sql: str


def read_migrations(folder_name: str) -> list[Migration]:
    """Read `bot/<folder_name>/NNNN_name.sql` (package data), numbered 1, 2, 3... without gaps."""
    folder: Traversable = resources.files("bot").joinpath(folder_name)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), match.group(2), sql))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps: {[m.version for m in found]}")
    return found
