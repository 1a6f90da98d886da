"""The parameter table, and reading each parameter's value as typed; what is not allowed raises `ParamError`."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from comfy._prompt_text import number_text, split_multi_prompt
from comfy.param_error import ParamError, ParamProblem, UseInstead
from comfy.profiles import ParamLimits

MAX_WEIGHT = 10
QUALITIES = (0.25, 0.5, 1.0, 2.0)
MAX_STEPS = 150
CFG_RANGE = (1.0, 30.0)
IW_MAX = 3
ZOOM_RANGE = (1.0, 2.0)  # `--zoom`, as Midjourney's Custom Zoom

# A parameter starts at the beginning or after whitespace: `--`, or a long dash a phone made of it.
_FLAG_RE = re.compile(r"(?:(?<=\s)|^)(--|[\u2014\u2013])([A-Za-z]\S*)")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_ASPECT_RE = re.compile(r"([0-9]{1,9})\s*:\s*([0-9]{1,9})")
_NAME_RE = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")
_MAX_NUMBER_CHARS = 32


@dataclass(frozen=True, slots=True)
class Flag:
    """A parameter: its canonical name, the other spellings it takes, and an example of its use."""

    name: str
    aliases: tuple[str, ...] = ()
    example: str = ""


FLAGS = (
    Flag("ar", ("aspect",), example="--ar 16:9"),
    Flag("seed", example="--seed 42"),
    Flag("no", example="--no people, text"),
    Flag("chaos", ("c",), example="--chaos 30"),
    Flag("stylize", ("s",), example="--stylize 250"),
    Flag("quality", ("q",), example="--quality .5"),
    Flag("steps", example="--steps 30"),
    Flag("cfg", example="--cfg 6.5"),
    Flag("sampler", example="--sampler euler_ancestral"),
    Flag("scheduler", example="--scheduler karras"),
    Flag("repeat", ("r",), example="--repeat 2"),
    Flag("model", example="--model NAME"),
    Flag("style", example="--style NAME"),
    Flag("tile", example="--tile"),
    Flag("iw", example="--iw 1.5"),
    Flag("zoom", example="--zoom 1.5"),
)
FLAG_BY_NAME = {flag.name: flag for flag in FLAGS}
_SPELLINGS = {spelling: flag.name for flag in FLAGS for spelling in (flag.name, *flag.aliases)}
# Midjourney parameters this bot has no use for, with what to use instead.
_NOT_USED_HERE = {
    "v": UseInstead.MODEL,
    "version": UseInstead.MODEL,
    "niji": UseInstead.MODEL,
    "hd": UseInstead.QUALITY,
    "uplight": UseInstead.UPSCALE_BUTTONS,
    "upbeta": UseInstead.UPSCALE_BUTTONS,
}


def valid_flags() -> list[str]:
    """Every parameter spelling the parser accepts, canonical name first then its aliases (`--ar`, ...)."""
    return [f"--{spelling}" for flag in FLAGS for spelling in (flag.name, *flag.aliases)]


def closest_first(names: Sequence[str], wrong: str) -> tuple[str, ...]:
    """`names`, the (up to 3) closest to `wrong` first, ignoring case."""
    close = difflib.get_close_matches(wrong.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    ordered = [n for c in close for n in names if n.lower() == c]
    return (*ordered, *(n for n in names if n not in ordered))


# ---------------------------------------------------------------------------------------------- splitting


@dataclass(frozen=True, slots=True)
class Given:
    """One parameter as typed: its canonical name, the spelling used (`--c`, `—ar`) and its raw value."""

    name: str
    spelling: str
    value: str


def split_parameters(prompt: str) -> tuple[str, dict[str, Given]]:
    """The prompt text and the parameters after it; unknown or repeated parameters are refused."""
    matches = list(_FLAG_RE.finditer(prompt))
    text = prompt[: matches[0].start() if matches else len(prompt)].strip()
    given: dict[str, Given] = {}
    for index, match in enumerate(matches):
        dash, token = match.groups()
        spelling = dash + token
        name = _SPELLINGS.get(token.lower())
        if name is None:
            raise _unknown_flag(dash, token)
        if name in given:
            first = given[name].spelling
            raise ParamError(ParamProblem.GIVEN_TWICE, flag=name, spelling=spelling, first_spelling=first)
        end = matches[index + 1].start() if index + 1 < len(matches) else len(prompt)
        given[name] = Given(name, spelling, prompt[match.end() : end].strip())
    return text, given


def _unknown_flag(dash: str, token: str) -> ParamError:
    spelling = f"{dash}{token}"
    key = token.lower()
    if key in _NOT_USED_HERE:
        return ParamError(ParamProblem.NOT_USED_HERE, spelling=spelling, instead=_NOT_USED_HERE[key])
    glued = [s for s in _SPELLINGS if key.startswith(s) and key[len(s) :][:1] in set("0123456789=:.")]
    if glued:
        best = max(glued, key=len)
        value = token[len(best) :].lstrip("=")
        return ParamError(
            ParamProblem.UNKNOWN_PARAMETER, spelling=spelling, suggestion=f"--{best}", value=value
        )
    close = difflib.get_close_matches(key, list(_SPELLINGS), n=1, cutoff=0.75)
    suggestion = f"--{close[0]}" if close else None
    return ParamError(ParamProblem.UNKNOWN_PARAMETER, spelling=spelling, suggestion=suggestion)


# ------------------------------------------------------------------------------------------------- values


def single(given: Given) -> str:
    """The value of a one-value parameter; refuses a missing value or text that follows it."""
    if not given.value:
        raise ParamError(ParamProblem.NEEDS_VALUE, flag=given.name, spelling=given.spelling)
    if len(given.value.split()) > 1 and given.name != "ar":
        raise _text_after(given)
    return given.value


def _text_after(given: Given) -> ParamError:
    problem = ParamProblem.TEXT_AFTER_PARAMETER
    return ParamError(problem, flag=given.name, spelling=given.spelling, value=given.value)


@dataclass(frozen=True, slots=True)
class _Allowed:
    """The numbers a parameter takes: from low to high (whole ones only, if `whole`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    choices: tuple[str, ...] = ()


def _number(given: Given, allowed: _Allowed) -> Decimal:
    """The value read as a number (not yet checked against `allowed`)."""
    value = single(given)
    if len(value) > _MAX_NUMBER_CHARS or not _NUMBER_RE.fullmatch(value):
        raise _not_allowed(ParamProblem.BAD_NUMBER, given, allowed)
    return Decimal(value)


def _not_allowed(problem: ParamProblem, given: Given, allowed: _Allowed) -> ParamError:
    return ParamError(
        problem,
        flag=given.name,
        spelling=given.spelling,
        value=given.value,
        low=allowed.low,
        high=allowed.high,
        whole=allowed.whole,
        choices=allowed.choices,
    )


def whole(given: Given | None, low: int, high: int, default: int) -> int:
    """A whole number from `low` to `high` (`default` when the parameter is not given)."""
    if given is None:
        return default
    allowed = _Allowed(low, high, whole=True)
    number = _number(given, allowed)
    if number != number.to_integral_value() or not low <= number <= high:
        raise _not_allowed(ParamProblem.OUT_OF_RANGE, given, allowed)
    return int(number)


def fraction(given: Given, low: float, high: float) -> float:
    """A number from `low` to `high`."""
    allowed = _Allowed(low, high)
    number = _number(given, allowed)
    if not Decimal(repr(low)) <= number <= Decimal(repr(high)):
        raise _not_allowed(ParamProblem.OUT_OF_RANGE, given, allowed)
    return float(number)


def quality(given: Given | None) -> float:
    """One of QUALITIES (1 when the parameter is not given)."""
    if given is None:
        return 1.0
    allowed = _Allowed(choices=tuple(number_text(q) for q in QUALITIES))
    number = _number(given, allowed)
    if number not in {Decimal(repr(q)) for q in QUALITIES}:
        raise _not_allowed(ParamProblem.OUT_OF_RANGE, given, allowed)
    return float(number)


def aspect(given: Given, limits: ParamLimits) -> tuple[int, int]:
    """`W:H`, reduced (`16:9`, `2:1` for `4:2`), within `limits.max_aspect` either way."""
    value = single(given)
    match = _ASPECT_RE.fullmatch(value)
    if match is None:
        if _ASPECT_RE.match(value) and len(value.split()) > 1:
            raise _text_after(given)
        raise ParamError(ParamProblem.BAD_ASPECT, flag=given.name, spelling=given.spelling, value=value)
    width, height = int(match.group(1)), int(match.group(2))
    if width == 0 or height == 0 or max(width / height, height / width) > limits.max_aspect:
        raise ParamError(
            ParamProblem.ASPECT_OUT_OF_RANGE,
            flag=given.name,
            spelling=given.spelling,
            value=f"{width}:{height}",
            high=limits.max_aspect,
        )
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


def pick(names: Sequence[str], given: Given) -> str:
    """`given`'s value matched case-insensitively against `names`, in the spelling of `names`."""
    if not given.value and names:
        raise ParamError(
            ParamProblem.NEEDS_NAME,
            flag=given.name,
            spelling=given.spelling,
            choices=closest_first(names, ""),
        )
    value = single(given)
    for name in names:
        if name.lower() == value.lower():
            return name
    if not names:
        raise ParamError(ParamProblem.NO_CHOICES, flag=given.name, spelling=given.spelling)
    raise ParamError(
        ParamProblem.UNKNOWN_NAME,
        flag=given.name,
        spelling=given.spelling,
        value=value,
        choices=closest_first(names, value),
    )


def sampler_name(given: Given | None, known: Sequence[str] | None, default: str) -> str:
    """A `--sampler` or `--scheduler` name: one of `known`, or any name when the server's list is unknown."""
    if given is None:
        return default
    if known:
        return pick(list(known), given)
    value = single(given)
    if not _NAME_RE.fullmatch(value):
        raise ParamError(ParamProblem.BAD_NAME, flag=given.name, spelling=given.spelling, value=value)
    return value


def no_items(given: Given | None) -> tuple[str, ...]:
    """`--no a, b`: the items to leave out, each once, in order."""
    if given is None:
        return ()
    items = [item.strip() for item in given.value.split(",")]
    unique = tuple(dict.fromkeys(item for item in items if item))
    if not unique:
        raise ParamError(ParamProblem.NOTHING_TO_LEAVE_OUT, flag=given.name, spelling=given.spelling)
    return unique


def weighted(text: str) -> tuple[str, list[str]]:
    """The positive text and the negative parts of a multi-prompt; plain text passes through untouched."""
    if "::" not in text:
        return text, []
    positive: list[str] = []
    negative: list[str] = []
    total = Decimal(0)
    for part, typed in split_multi_prompt(text):
        weight = Decimal(1) if typed is None else Decimal(typed)
        if len(typed or "") > _MAX_NUMBER_CHARS or not -MAX_WEIGHT <= weight <= MAX_WEIGHT:
            raise ParamError(
                ParamProblem.WEIGHT_OUT_OF_RANGE, value=f"{part}::{typed}", low=-MAX_WEIGHT, high=MAX_WEIGHT
            )
        total += weight
        shown = number_text(float(abs(weight)))
        (negative if weight < 0 else positive).append(f"({part}:{shown})")
    if not positive and not negative:
        raise ParamError(ParamProblem.NO_DESCRIPTION)
    if total <= 0:
        raise ParamError(ParamProblem.WEIGHTS_NOT_POSITIVE, total=float(total))
    return ", ".join(positive), negative
