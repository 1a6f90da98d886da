"""Prompt text helpers: `{a, b}` permutations with their escapes, `text::weight` multi-prompts, numbers."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

_log = logging.getLogger(__name__)

# `\{`, `\}` and `\,` are literal characters; every other backslash is kept as typed.
_ESCAPABLE = frozenset("{},")
# Expansion counts saturate here, so a hostile `{a,b}{a,b}...` never builds a huge integer.
COUNT_CAP = 10**12

_WEIGHT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True, slots=True)
class _Group:
    """One `{a, b, ...}` permutation; each option is a sequence of text and nested groups."""

    options: tuple[tuple[str | _Group, ...], ...]


@dataclass(frozen=True, slots=True)
class Permutations:
    """A prompt split into literal text and `{a, b}` groups, with the number of prompts it expands to."""

    parts: tuple[str | _Group, ...]
    count: int  # saturated at COUNT_CAP

    def expand(self) -> list[str]:
        """Every combination, in reading order (`{a, b} {c, d}` -> a c, a d, b c, b d).

        Only call this when `count` is small: nesting depth is below `count`, so recursion stays shallow.
        """
        return _expand(self.parts)


@dataclass(slots=True)
class _Frame:
    """The permutation being read: its finished options, the current one, and their expansion counts."""

    options: list[tuple[str | _Group, ...]] = field(default_factory=list)
    current: list[str | _Group] = field(default_factory=list)
    total: int = 0  # expansions of the finished options
    product: int = 1  # expansions of the current option


def _expand(parts: tuple[str | _Group, ...]) -> list[str]:
    results = [""]
    for part in parts:
        if isinstance(part, str):
            results = [r + part for r in results]
        else:
            options = [text.strip() for option in part.options for text in _expand(option)]
            results = [r + o for r in results for o in options]
    return results


def _tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, char) pairs: kind is "open", "close", "comma" or "char" (escaped specials become "char")."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            tokens.append(("char", text[i + 1]))
            i += 2
            continue
        kind = {"{": "open", "}": "close", ",": "comma"}.get(char, "char")
        tokens.append((kind, char))
        i += 1
    return tokens


def parse_permutations(text: str) -> Permutations:
    """Find the `{a, b}` permutations in `text`.

    A brace pair is a permutation only when it is balanced and has a comma of its own (not one inside a
    nested pair); anything else (`{solo}`, `{}`, a lone `{` or `}`) stays literal text. Options are
    stripped of surrounding whitespace and may be empty. Works without recursion, whatever the nesting.
    """
    tokens = _tokenize(text)
    partner: dict[int, int] = {}
    opens: list[int] = []
    for index, (kind, _) in enumerate(tokens):
        if kind == "open":
            opens.append(index)
        elif kind == "close" and opens:
            start = opens.pop()
            partner[start] = index
            partner[index] = start

    groups: set[int] = set()  # token indexes of the "{" that open a permutation
    separators: set[int] = set()
    enclosing: list[int] = []
    for index, (kind, _) in enumerate(tokens):
        if index in partner:
            if kind == "open":
                enclosing.append(index)
            else:
                enclosing.pop()
        elif kind == "comma" and enclosing:
            groups.add(enclosing[-1])
            separators.add(index)

    root = _Frame()
    frames = [root]
    for index, (kind, char) in enumerate(tokens):
        frame = frames[-1]
        if kind == "open" and index in groups:
            frames.append(_Frame())
        elif kind == "close" and partner.get(index) in groups:
            frames.pop()
            frame.options.append(tuple(frame.current))
            parent = frames[-1]
            parent.current.append(_Group(tuple(frame.options)))
            parent.product = min(COUNT_CAP, parent.product * min(COUNT_CAP, frame.total + frame.product))
        elif index in separators:
            frame.options.append(tuple(frame.current))
            frame.total = min(COUNT_CAP, frame.total + frame.product)
            frame.current = []
            frame.product = 1
        elif frame.current and isinstance(frame.current[-1], str):
            frame.current[-1] += char
        else:
            frame.current.append(char)
    return Permutations(parts=tuple(root.current), count=root.product)


def escape_permutations(text: str) -> str:
    """Escape `text` so that `parse_permutations(...)` reads it back as exactly `text`, with no groups."""
    out: list[str] = []
    for index, char in enumerate(text):
        if char in "{}" or (char == "," and index > 0 and text[index - 1] == "\\"):
            out.append("\\")
        out.append(char)
    return "".join(out)


def split_multi_prompt(text: str) -> list[tuple[str, str | None]]:
    """Split Midjourney multi-prompt text `space:: ship::2` into (part, weight as typed or None).

    A weight is a number right after `::` that ends at whitespace, the end, or another `::`; parts are
    stripped and empty parts (with their weights) are dropped.
    """
    parts: list[tuple[str, str | None]] = []
    position = 0
    while True:
        found = text.find("::", position)
        if found < 0:
            parts.append((text[position:].strip(), None))
            break
        segment = text[position:found].strip()
        match = _WEIGHT_RE.match(text, found + 2)
        weight: str | None = None
        position = found + 2
        if match:
            end = match.end()
            if end == len(text) or text[end].isspace() or text.startswith("::", end):
                weight = match.group()
                position = end
        parts.append((segment, weight))
    return [(segment, weight) for segment, weight in parts if segment]


def number_text(value: float) -> str:
    """A number the way a person writes it (and the parser reads it back): 7, 6.5, 0.25."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
