"""Formatting helpers under the words: plurals, ordinals, inline code, cutting to a limit (no Discord objects)."""

from __future__ import annotations


def plural(count: int, word: str) -> str:
    """`1 job`, `3 jobs`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def ordinal(n: int) -> str:
    """`1st`, `2nd`, `3rd`, `11th`, `22nd`."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def code(text: str) -> str:
    """Text made safe for Discord inline code."""
    return text.replace("`", "'")


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with `…` (for Discord's length limits)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
