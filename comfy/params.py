"""Midjourney-style prompts (`a lighthouse --ar 16:9 --seed 7 --no people`) parsed into generation requests.

How each parameter maps onto ComfyUI (this table is copied into the README):

| parameter | allowed | what it does |
|---|---|---|
| `--ar W:H`, `--aspect W:H` | whole numbers, from 1:4 to 4:1 (`[params] max_aspect`) | keeps the model's pixel area (width x height) in the new shape; both sides are multiples of 64 (of 8 when the model's smaller side is under 512), rounded towards the exact ratio, and never below 64 (the other side then follows the ratio) |
| `--seed N` | 0 to 4294967295 | the sampler seed; without it a random seed is chosen and recorded on the job |
| `--no a, b` | a comma list | added to the negative prompt, after the model's and the style's negative |
| `--chaos N`, `--c N` | 0 to 100, default 0 | variety across the four grid images: cfg x (1 - 0.4 x chaos/100), so chaos 100 samples at 60 % of the cfg (looser, more varied compositions); `variation_strength` = chaos/100 is also handed to templates that bind it |
| `--stylize N`, `--s N` | 0 to 1000, default 100 | artistic freedom: cfg x factor, the factor going linearly from 1.25 at 0 to 1 at 100 (the model's own cfg, exactly) to 0.5 at 1000 |
| `--quality Q`, `--q Q` | .25, .5, 1, 2 | steps = model steps x Q, rounded, 1 to 150 |
| `--steps N` | 1 to 150 | exact sampler steps; wins over `--quality` |
| `--cfg X` | 1 to 30 | exact cfg; wins over `--stylize` and `--chaos` |
| `--sampler NAME`, `--scheduler NAME` | names the ComfyUI server reports | the KSampler's sampler_name / scheduler |
| `--repeat N`, `--r N` | 1 to `[params] max_repeat` (4) | N separate jobs; each gets its own random seed, or seed, seed+1, ... after `--seed` |
| `--model NAME` | a configured model (any case) | the checkpoint and its defaults |
| `--style NAME` | a configured style (any case) | its prefix and suffix go around the prompt, its negative into the negative prompt |
| `--tile` | models whose template supports it | seamless tiling |
| `--iw X` | 0 to 3, default 1, only with an image prompt | img2img denoise = 1 - 0.3 x iw, kept within 0.1 to 1 (iw 0: 1.0, the image barely counts; iw 1: 0.7; iw 2: 0.4; iw 3: 0.1) |
| `--zoom X` | 1 to 2, only in Custom Zoom (under an upscaled image) | the canvas grows X times around the picture, which the model fills in |

The computed cfg is clamped to 1 to 30 and rounded to 0.01 (with stylize 100 and chaos 0 it is the model's
cfg, untouched).

Prompt text:
- Parameters start where whitespace is followed by `--` and a letter, so `state-of--the-art` is text. A long
  dash (`—` or `–`) before a letter counts as `--`, because phones turn `--` into one. Everything before the
  first parameter is the prompt text and is kept exactly as typed (quotes, backslashes, unicode, brackets);
  text after a parameter's value is refused with a hint to put the description first.
- `a {red, blue} car` makes one prompt per option, nested `{red, {dark, light} blue}` too, also inside
  parameters (`--ar {1:1, 16:9}`). A brace pair without a comma of its own (`{solo}`, `{}`) and unbalanced
  braces stay literal. `\\{`, `\\}` and `\\,` are a literal brace or comma; other backslashes are kept.
  `--no {a, b}` therefore makes two prompts; write `--no a, b` to leave out both.
- `space:: ship::2` is a multi-prompt: each part becomes `(part:weight)` (weight 1 when none is given) in
  the positive prompt, joined with ", "; parts with a negative weight (`ship::-0.5`) go to the negative
  prompt as `(ship:0.5)`. Weights go from -10 to 10 and must add up to more than 0. Text without `::` is
  passed on untouched.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from comfy._prompt_text import COUNT_CAP, escape_permutations, parse_permutations, split_multi_prompt
from comfy.profiles import ModelProfile, ParamLimits, StylePreset

__all__ = [
    "GenerationRequest",
    "ParamError",
    "ParseContext",
    "blend_request",
    "format_request",
    "parse_prompt",
    "request_from_json",
    "request_to_json",
    "valid_flags",
    "with_new_seed",
]

_log = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1
MIN_SIDE = 64
MAX_SIDE = 16384  # ComfyUI's MAX_RESOLUTION
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
_SHOWN_NAMES = 8


class ParamError(ValueError):
    """A prompt that cannot be generated; `str(err)` tells a Discord member what is wrong and what is allowed."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One job's parameters, validated and resolved against the model profile."""

    text: str  # the prompt text of this permutation, parameters removed, as typed (for display)
    positive: str  # CLIPTextEncode text: style prefix/suffix and multi-prompt weights applied
    negative: str  # model negative, style negative, --no items, negative-weight parts; ", " joined
    model: str
    checkpoint: str
    width: int
    height: int
    seed: int
    steps: int  # after --quality
    cfg: float  # after --stylize and --chaos, unless --cfg was given
    sampler: str
    scheduler: str
    batch_size: int = 4
    denoise: float = 1.0  # below 1 only for image prompts (from --iw)
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    aspect: tuple[int, int] | None = None  # reduced, e.g. (16, 9)
    style: str | None = None
    no: tuple[str, ...] = ()
    tile: bool = False
    image_weight: float | None = None
    zoom: float | None = None  # a Custom Zoom's `--zoom`: how much the canvas grows around the picture
    # Flags the user typed (canonical names such as "ar", "seed"), so re-formatting is faithful. It records
    # how the request was written, not what is generated, so it takes no part in equality.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)
    variation_strength: float = 0.0  # chaos / 100, for templates that bind it


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a prompt is checked against: the server's models, styles, limits and backend capabilities."""

    models: Sequence[ModelProfile]  # the first is the default
    styles: Sequence[StylePreset] = ()
    limits: ParamLimits = field(default_factory=ParamLimits)
    samplers: Sequence[str] | None = None  # from the backend's /object_info when known
    schedulers: Sequence[str] | None = None
    tile_models: frozenset[str] = frozenset()  # model names whose templates support --tile
    has_image: bool = False
    custom_zoom: bool = False  # the prompt of a Custom Zoom: `--zoom` is required (elsewhere refused)
    text_optional: bool = False  # a prompt may be parameters only (edited from a blend's, which has no text)
    default_model: str | None = None  # a per-user default overriding models[0]
    rng: random.Random | None = None


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    aliases: tuple[str, ...] = ()
    example: str = ""


_FLAGS = (
    _Flag("ar", ("aspect",), example="--ar 16:9"),
    _Flag("seed", example="--seed 42"),
    _Flag("no", example="--no people, text"),
    _Flag("chaos", ("c",), example="--chaos 30"),
    _Flag("stylize", ("s",), example="--stylize 250"),
    _Flag("quality", ("q",), example="--quality .5"),
    _Flag("steps", example="--steps 30"),
    _Flag("cfg", example="--cfg 6.5"),
    _Flag("sampler", example="--sampler euler_ancestral"),
    _Flag("scheduler", example="--scheduler karras"),
    _Flag("repeat", ("r",), example="--repeat 2"),
    _Flag("model", example="--model NAME"),
    _Flag("style", example="--style NAME"),
    _Flag("tile", example="--tile"),
    _Flag("iw", example="--iw 1.5"),
    _Flag("zoom", example="--zoom 1.5"),
)
_FLAG_BY_NAME = {flag.name: flag for flag in _FLAGS}
_SPELLINGS = {spelling: flag.name for flag in _FLAGS for spelling in (flag.name, *flag.aliases)}
# Midjourney parameters this bot has no use for, with what to do instead.
_HINTS = {
    "v": "models are chosen with `--model NAME`",
    "version": "models are chosen with `--model NAME`",
    "niji": "models are chosen with `--model NAME`",
    "hd": "use `--quality 2` for more steps",
    "uplight": "upscales are the U buttons under the grid",
    "upbeta": "upscales are the U buttons under the grid",
}


def valid_flags() -> list[str]:
    """Every parameter spelling the parser accepts, canonical name first then its aliases (`--ar`, ...)."""
    return [f"--{spelling}" for flag in _FLAGS for spelling in (flag.name, *flag.aliases)]


def _flag_list() -> str:
    return ", ".join(
        f"`--{flag.name}`" + (f" (`--{'`, `--'.join(flag.aliases)}`)" if flag.aliases else "")
        for flag in _FLAGS
    )


def _shown(value: str, limit: int = 40) -> str:
    """A user's value made safe to show inside Discord inline code."""
    value = " ".join(value.replace("`", "'").split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return f"`{value}`"


def _num(value: float) -> str:
    """A number the way a person writes it (and the parser reads it back): 7, 6.5, 0.25."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _names(names: Sequence[str], wrong: str) -> str:
    """A few valid names, the closest to `wrong` first."""
    close = difflib.get_close_matches(wrong.lower(), [n.lower() for n in names], n=3, cutoff=0.6)
    ordered = [n for c in close for n in names if n.lower() == c]
    ordered += [n for n in names if n not in ordered]
    shown = ", ".join(f"`{n}`" for n in ordered[:_SHOWN_NAMES])
    more = len(ordered) - _SHOWN_NAMES
    return shown + (f" (and {more} more)" if more > 0 else "")


# ---------------------------------------------------------------------------------------------- splitting


@dataclass(frozen=True, slots=True)
class _Given:
    """One parameter as typed: its canonical name, the spelling used (`--c`, `—ar`) and its raw value."""

    name: str
    spelling: str
    value: str


def _split(prompt: str) -> tuple[str, dict[str, _Given]]:
    """The prompt text and the parameters after it; unknown or repeated parameters are refused."""
    matches = list(_FLAG_RE.finditer(prompt))
    text = prompt[: matches[0].start() if matches else len(prompt)].strip()
    given: dict[str, _Given] = {}
    for index, match in enumerate(matches):
        dash, token = match.groups()
        spelling = dash + token
        name = _SPELLINGS.get(token.lower())
        if name is None:
            raise ParamError(_unknown_flag(dash, token))
        if name in given:
            first = given[name].spelling
            also = "" if first.lower() == spelling.lower() else f" (as `{first}` and `{spelling}`)"
            raise ParamError(f"`--{name}` is given twice{also}; give it once.")
        end = matches[index + 1].start() if index + 1 < len(matches) else len(prompt)
        given[name] = _Given(name, spelling, prompt[match.end() : end].strip())
    return text, given


def _unknown_flag(dash: str, token: str) -> str:
    shown = _shown(f"{dash}{token}")
    key = token.lower()
    hint = ""
    if key in _HINTS:
        hint = f" This bot doesn't use it: {_HINTS[key]}."
    else:
        glued = [s for s in _SPELLINGS if key.startswith(s) and key[len(s) :][:1] in set("0123456789=:.")]
        close = difflib.get_close_matches(key, list(_SPELLINGS), n=1, cutoff=0.75)
        if glued:
            best = max(glued, key=len)
            hint = f" Did you mean `--{best} {token[len(best) :].lstrip('=')}` (with a space)?"
        elif close:
            hint = f" Did you mean `--{close[0]}`?"
    if dash != "--":
        hint += (
            " (A long dash right before a word is read as `--`, since phones turn `--` into one; "
            "put a space after it if it belongs to your description.)"
        )
    return f"Unknown parameter {shown}.{hint} Parameters you can use: {_flag_list()}."


# ------------------------------------------------------------------------------------------------- values


def _single(given: _Given) -> str:
    """The value of a one-value parameter; refuses a missing value or text that follows it."""
    flag = _FLAG_BY_NAME[given.name]
    if not given.value:
        raise ParamError(f"`{given.spelling}` needs a value, e.g. `{flag.example}`.")
    if len(given.value.split()) > 1 and given.name != "ar":
        raise ParamError(
            f"`{given.spelling}` takes one value, but it is followed by {_shown(given.value)}. "
            "Put your description before the parameters."
        )
    return given.value


def _decimal(given: _Given, allowed: str) -> Decimal:
    value = _single(given)
    if len(value) > _MAX_NUMBER_CHARS or not _NUMBER_RE.fullmatch(value):
        raise ParamError(f"`{given.spelling}` must be {allowed}; you gave {_shown(value)}.")
    return Decimal(value)


def _whole(given: _Given | None, low: int, high: int, default: int) -> int:
    if given is None:
        return default
    allowed = f"a whole number from {low} to {high}"
    number = _decimal(given, allowed)
    if number != number.to_integral_value() or not low <= number <= high:
        raise ParamError(f"`{given.spelling}` must be {allowed}; you gave {_shown(given.value)}.")
    return int(number)


def _fraction(given: _Given, low: float, high: float) -> float:
    allowed = f"a number from {_num(low)} to {_num(high)} (like `1` or `1.5`)"
    number = _decimal(given, allowed)
    if not Decimal(repr(low)) <= number <= Decimal(repr(high)):
        raise ParamError(f"`{given.spelling}` must be {allowed}; you gave {_shown(given.value)}.")
    return float(number)


def _quality(given: _Given | None) -> float:
    if given is None:
        return 1.0
    allowed = "one of `.25`, `.5`, `1` or `2`"
    number = _decimal(given, allowed)
    if number not in {Decimal(repr(q)) for q in QUALITIES}:
        raise ParamError(f"`{given.spelling}` must be {allowed}; you gave {_shown(given.value)}.")
    return float(number)


def _aspect(given: _Given, limits: ParamLimits) -> tuple[int, int]:
    value = _single(given)
    match = _ASPECT_RE.fullmatch(value)
    if match is None:
        if _ASPECT_RE.match(value) and len(value.split()) > 1:
            raise ParamError(
                f"`{given.spelling}` takes one value, but it is followed by {_shown(value)}. "
                "Put your description before the parameters."
            )
        raise ParamError(
            f"`{given.spelling}` must be two whole numbers like `16:9` or `2:3`; you gave {_shown(value)}."
        )
    width, height = int(match.group(1)), int(match.group(2))
    widest = _num(limits.max_aspect)
    if width == 0 or height == 0 or max(width / height, height / width) > limits.max_aspect:
        raise ParamError(
            f"`{given.spelling} {width}:{height}` is out of range: the aspect ratio may go from "
            f"1:{widest} (tall) to {widest}:1 (wide)."
        )
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


def _size(profile: ModelProfile, aspect: tuple[int, int] | None) -> tuple[int, int]:
    """The model's pixel area reshaped to `aspect`, both sides multiples of the model's size unit.

    Of the roundings around the exact shape, the one closest to the asked ratio wins (then the one
    closest to the model's area), so `--ar 3:2` gives a 3:2 image wherever the unit allows one. A side
    that would fall under 64 pixels is raised to 64 and the other side follows the ratio.
    """
    if aspect is None:
        return profile.width, profile.height
    unit = 64 if min(profile.width, profile.height) >= 512 else 8
    area = profile.width * profile.height
    ratio = aspect[0] / aspect[1]
    exact_w, exact_h = math.sqrt(area * ratio), math.sqrt(area / ratio)
    if min(exact_w, exact_h) < MIN_SIDE:
        if exact_w < exact_h:
            exact_w, exact_h = MIN_SIDE, MIN_SIDE / ratio
        else:
            exact_w, exact_h = MIN_SIDE * ratio, MIN_SIDE

    def around(exact: float) -> set[int]:
        low = max(MIN_SIDE, unit * math.floor(exact / unit))
        return {min(MAX_SIDE, low), min(MAX_SIDE, low + unit)}

    def error(size: tuple[int, int]) -> tuple[float, float]:
        w, h = size
        return abs(math.log(w / h / ratio)) + 0.25 * abs(math.log(w * h / (exact_w * exact_h))), -w * h

    return min(((w, h) for w in around(exact_w) for h in around(exact_h)), key=error)


def _pick(names: Sequence[str], given: _Given, what: str, plural: str) -> str:
    """`given`'s value matched case-insensitively against `names`, in the spelling of `names`."""
    if not given.value and names:
        raise ParamError(f"`{given.spelling}` needs a {what} name: {_names(names, '')}.")
    value = _single(given)
    for name in names:
        if name.lower() == value.lower():
            return name
    if not names:
        raise ParamError(f"There are no {plural} on this server, so `{given.spelling}` can't be used.")
    raise ParamError(
        f"Unknown {what} {_shown(value)}. {plural.capitalize()} you can use: {_names(names, value)}."
    )


def _sampler_name(given: _Given | None, known: Sequence[str] | None, default: str, what: str) -> str:
    if given is None:
        return default
    if known:
        return _pick(list(known), given, what, f"{what}s")
    value = _single(given)
    if not _NAME_RE.fullmatch(value):
        raise ParamError(
            f"`{given.spelling}` must be a {what} name (letters, digits and `_`); you gave {_shown(value)}."
        )
    return value


def _profile(given: _Given | None, ctx: ParseContext) -> ModelProfile:
    models = list(ctx.models)
    if not models:
        raise ParamError("No models are set up on this server yet; ask an admin to add one.")
    by_name = {m.name.lower(): m for m in models}
    if given is not None:
        return by_name[_pick([m.name for m in models], given, "model", "models").lower()]
    if ctx.default_model is not None:
        chosen = by_name.get(ctx.default_model.lower())
        if chosen is not None:
            return chosen
        _log.warning("default model %r is not configured; using %r", ctx.default_model, models[0].name)
    return models[0]


def _style(given: _Given | None, ctx: ParseContext) -> StylePreset | None:
    if given is None:
        return None
    styles = list(ctx.styles)
    name = _pick([s.name for s in styles], given, "style", "styles")
    return next(s for s in styles if s.name == name)


def _no_items(given: _Given | None) -> tuple[str, ...]:
    if given is None:
        return ()
    items = [item.strip() for item in given.value.split(",")]
    unique = tuple(dict.fromkeys(item for item in items if item))
    if not unique:
        raise ParamError(f"`{given.spelling}` needs something to leave out, e.g. `--no people, text`.")
    return unique


def _weighted(text: str) -> tuple[str, list[str]]:
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
                f"The weight in {_shown(f'{part}::{typed}')} is out of range: "
                f"`::` weights go from -{MAX_WEIGHT} to {MAX_WEIGHT}."
            )
        total += weight
        shown = _num(float(abs(weight)))
        (negative if weight < 0 else positive).append(f"({part}:{shown})")
    if not positive and not negative:
        raise _empty_prompt()
    if total <= 0:
        raise ParamError(
            f"The `::` weights add up to {_num(float(total))}; they must add up to more than 0. "
            "Give the main part more weight, e.g. `space ship::2 planets::-0.5`."
        )
    return ", ".join(positive), negative


def _empty_prompt() -> ParamError:
    return ParamError(
        "Your prompt has no description: write what to draw first, then the parameters, "
        "e.g. `a lighthouse at dusk --ar 16:9`."
    )


def _around(prefix: str, text: str, suffix: str) -> str:
    """`text` between a style's prefix and suffix, with a space where the preset doesn't bring one."""

    def join(left: str, right: str) -> str:
        if not left or not right:
            return left + right
        if left[-1].isspace() or right[0].isspace() or right[0] in ",.;:!?)":
            return left + right
        return f"{left} {right}"

    return join(join(prefix, text), suffix)


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class _Plan:
    """One permutation, validated: the request without its seed, how many jobs, and the seed if fixed."""

    request: GenerationRequest
    repeat: int
    seed: int | None


def _plan(prompt: str, ctx: ParseContext) -> _Plan:
    limits = ctx.limits
    text, given = _split(prompt)
    if not text and not ctx.text_optional:
        raise _empty_prompt()
    get = given.get
    no = _no_items(get("no"))
    length = len(text) + len(", ".join(no))
    if length > limits.max_prompt_chars:
        counted = " (description and `--no` together)" if no else ""
        raise ParamError(
            f"Your prompt is {length:,} characters long{counted}; at most {limits.max_prompt_chars:,} are allowed."
        )
    profile = _profile(get("model"), ctx)
    style = _style(get("style"), ctx)
    aspect = _aspect(given["ar"], limits) if "ar" in given else None
    width, height = _size(profile, aspect)
    seed = None if "seed" not in given else _whole(given["seed"], 0, SEED_MAX, 0)
    chaos = _whole(get("chaos"), 0, 100, 0)
    stylize = _whole(get("stylize"), 0, 1000, 100)
    quality = _quality(get("quality"))
    repeat = _whole(get("repeat"), 1, limits.max_repeat, 1)

    if "steps" in given:
        steps = _whole(given["steps"], 1, MAX_STEPS, 0)
    else:
        steps = min(MAX_STEPS, max(1, math.floor(profile.steps * quality + 0.5)))
    if "cfg" in given:
        cfg = _fraction(given["cfg"], *CFG_RANGE)
    else:
        cfg = _derived_cfg(profile.cfg, stylize, chaos)
    sampler = _sampler_name(get("sampler"), ctx.samplers, profile.sampler, "sampler")
    scheduler = _sampler_name(get("scheduler"), ctx.schedulers, profile.scheduler, "scheduler")

    if "tile" in given:
        if given["tile"].value:
            raise ParamError(
                f"`{given['tile'].spelling}` takes no value, but it is followed by "
                f"{_shown(given['tile'].value)}. Put your description before the parameters."
            )
        tiling = {name.lower() for name in ctx.tile_models}
        if profile.name.lower() not in tiling:
            tilers = [m.name for m in ctx.models if m.name.lower() in tiling]
            where = f"Models that can: {_names(tilers, profile.name)}." if tilers else "No model here can."
            raise ParamError(
                f"`--tile` (seamless tiles) isn't available for the model `{profile.name}`. {where}"
            )

    image_weight: float | None = None
    denoise = 1.0
    if "iw" in given:
        if not ctx.has_image:
            raise ParamError(
                "`--iw` (image weight) only works together with an image prompt; attach an image."
            )
        image_weight = _fraction(given["iw"], 0, IW_MAX)
    elif ctx.has_image:
        image_weight = 1.0
    if image_weight is not None:
        denoise = round(min(1.0, max(0.1, 1.0 - 0.3 * image_weight)), 3)
    zoom = _zoom(given.get("zoom"), ctx)

    positive, negative_parts = _weighted(text)
    if style is not None:
        positive = _around(style.prefix, positive, style.suffix)
    negatives = [profile.negative, style.negative if style else "", *no, *negative_parts]
    request = GenerationRequest(
        text=text,
        positive=positive,
        negative=", ".join(n.strip() for n in negatives if n.strip()),
        model=profile.name,
        checkpoint=profile.checkpoint,
        width=width,
        height=height,
        seed=seed or 0,  # the real seed is set per job
        steps=steps,
        cfg=cfg,
        sampler=sampler,
        scheduler=scheduler,
        denoise=denoise,
        chaos=chaos,
        stylize=stylize,
        quality=quality,
        aspect=aspect,
        style=style.name if style else None,
        no=no,
        tile="tile" in given,
        image_weight=image_weight,
        zoom=zoom,
        explicit=frozenset(given),
        variation_strength=chaos / 100,
    )
    return _Plan(request, repeat, seed)


def _zoom(given: _Given | None, ctx: ParseContext) -> float | None:
    """`--zoom`: required in a Custom Zoom's prompt, refused anywhere else."""
    low, high = ZOOM_RANGE
    if given is None:
        if ctx.custom_zoom:
            raise ParamError(
                f"Custom Zoom needs `--zoom` with a number from {_num(low)} to {_num(high)}, e.g. `--zoom 1.5`."
            )
        return None
    if not ctx.custom_zoom:
        raise ParamError("`--zoom` only works in Custom Zoom, under an upscaled image.")
    return _fraction(given, low, high)


def _derived_cfg(base: float, stylize: int, chaos: int) -> float:
    """The model's cfg scaled by --stylize (1.25 at 0, 1 at 100, 0.5 at 1000) and --chaos (0.6 at 100)."""
    if stylize <= 100:
        factor = 1 + 0.25 * (100 - stylize) / 100
    else:
        factor = 1 - 0.5 * (stylize - 100) / 900
    factor *= 1 - 0.4 * chaos / 100
    if factor == 1:
        return base
    low, high = CFG_RANGE
    return round(min(high, max(low, base * factor)), 2)


def parse_prompt(raw: str, ctx: ParseContext) -> list[GenerationRequest]:
    """Parse a Midjourney-style prompt into one or more validated requests, or raise `ParamError`.

    Permutations (`{a, b}`) and `--repeat` make several requests, in reading order, repeats of a
    permutation next to each other. Every request carries a concrete seed.
    """
    try:
        return _parse(raw, ctx)
    except ParamError:
        raise
    except Exception as exc:  # a bug must still reach the member as a readable refusal
        _log.exception("unexpected error while parsing prompt %r", raw[:200])
        raise ParamError(
            "Sorry, this prompt could not be read because of a bug in the bot (it has been logged). "
            "Try writing it differently."
        ) from exc


def _parse(raw: str, ctx: ParseContext) -> list[GenerationRequest]:
    limits = ctx.limits
    hard_limit = 4 * limits.max_prompt_chars + 2000  # the whole message, with parameters and permutations
    if len(raw) > hard_limit:
        raise ParamError(
            f"This prompt is {len(raw):,} characters long with its parameters; at most {hard_limit:,} are allowed."
        )
    permutations = parse_permutations(raw)
    if permutations.count > limits.max_permutations:
        many = f"{permutations.count:,}" if permutations.count < COUNT_CAP else "over a trillion"
        raise ParamError(
            f"This prompt's `{{a, b}}` permutations make {many} prompts; at most "
            f"{limits.max_permutations} are allowed. Use fewer options."
        )
    prompts = permutations.expand()
    plans: list[_Plan] = []
    for prompt in prompts:
        try:
            plans.append(_plan(prompt, ctx))
        except ParamError as err:
            if len(prompts) == 1:
                raise
            raise ParamError(f"In the permutation {_shown(prompt, 80)}: {err}") from None
    jobs = sum(plan.repeat for plan in plans)
    if jobs > limits.max_permutations:
        repeats = {plan.repeat for plan in plans}
        how = (
            f"{len(plans)} prompts × `--repeat {repeats.pop()}`"
            if len(repeats) == 1
            else f"{len(plans)} prompts with their `--repeat`s"
        )
        raise ParamError(f"{how} make {jobs} jobs; at most {limits.max_permutations} are allowed per prompt.")

    rng = ctx.rng if ctx.rng is not None else random.Random()
    requests: list[GenerationRequest] = []
    for plan in plans:
        for index in range(plan.repeat):
            if plan.seed is None:
                seed = rng.randint(0, SEED_MAX)
            else:
                seed = (plan.seed + index) % (SEED_MAX + 1)  # wraps past the largest seed to 0
            requests.append(dataclasses.replace(plan.request, seed=seed))
    return requests


def with_new_seed(req: GenerationRequest, rng: random.Random) -> GenerationRequest:
    """The same request with a fresh random seed (for reroll); the seed no longer counts as typed."""
    return dataclasses.replace(req, seed=rng.randint(0, SEED_MAX), explicit=req.explicit - {"seed"})


def format_request(req: GenerationRequest) -> str:
    """The prompt that reproduces `req`: its text, the parameters the user typed, and always its seed.

    `parse_prompt(format_request(req), ctx)` gives `[req]` again with the same context. Braces and
    backslash-commas are escaped only when the plain text would be read as a permutation.
    """
    explicit = req.explicit
    flags: list[str] = []
    if "model" in explicit:
        flags.append(f"--model {req.model}")
    if req.style is not None:
        flags.append(f"--style {req.style}")
    if req.aspect is not None:
        flags.append(f"--ar {req.aspect[0]}:{req.aspect[1]}")
    if "chaos" in explicit:
        flags.append(f"--chaos {req.chaos}")
    if "stylize" in explicit:
        flags.append(f"--stylize {req.stylize}")
    if "quality" in explicit:
        flags.append(f"--quality {_num(req.quality)}")
    if "steps" in explicit:
        flags.append(f"--steps {req.steps}")
    if "cfg" in explicit:
        flags.append(f"--cfg {_num(req.cfg)}")
    if "sampler" in explicit:
        flags.append(f"--sampler {req.sampler}")
    if "scheduler" in explicit:
        flags.append(f"--scheduler {req.scheduler}")
    if req.tile:
        flags.append("--tile")
    if "iw" in explicit and req.image_weight is not None:
        flags.append(f"--iw {_num(req.image_weight)}")
    if req.no:
        flags.append("--no " + ", ".join(req.no))
    flags.append(f"--seed {req.seed}")
    if req.zoom is not None:
        flags.append(f"--zoom {_num(req.zoom)}")
    prompt = " ".join(part for part in (req.text, *flags) if part)  # a blend has no text
    plain = parse_permutations(prompt)
    if plain.count == 1 and plain.expand() == [prompt]:
        return prompt
    return escape_permutations(prompt)


def blend_request(ctx: ParseContext, aspect: tuple[int, int] | None = None) -> GenerationRequest:
    """The request of a /blend, which has no text: the default model's settings, its pixel area in the
    `aspect` shape (as `--ar` makes it) and a random seed (from `ctx.rng`)."""
    profile = _profile(None, ctx)
    if aspect is not None:
        divisor = math.gcd(*aspect)
        aspect = (aspect[0] // divisor, aspect[1] // divisor)
    width, height = _size(profile, aspect)
    rng = ctx.rng if ctx.rng is not None else random.Random()
    return GenerationRequest(
        text="",
        positive="",
        negative=profile.negative.strip(),
        model=profile.name,
        checkpoint=profile.checkpoint,
        width=width,
        height=height,
        seed=rng.randint(0, SEED_MAX),
        steps=profile.steps,
        cfg=profile.cfg,
        sampler=profile.sampler,
        scheduler=profile.scheduler,
        aspect=aspect,
    )


def request_to_json(req: GenerationRequest) -> str:
    """Serialize a request for storage (the job's `request_json`)."""
    data = dataclasses.asdict(req)
    data["explicit"] = sorted(req.explicit)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def request_from_json(text: str) -> GenerationRequest:
    """Rebuild a request stored by `request_to_json`; unknown keys (from newer versions) are ignored."""
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    values = {key: value for key, value in data.items() if key in names}
    values["explicit"] = frozenset(values.get("explicit", ()))
    values["no"] = tuple(values.get("no", ()))
    if values.get("aspect") is not None:
        values["aspect"] = tuple(values["aspect"])
    return GenerationRequest(**values)
