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
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from comfy import _param_values as values
from comfy._param_values import (
    CFG_RANGE,
    FLAG_BY_NAME,
    FLAGS,
    IW_MAX,
    MAX_STEPS,
    ZOOM_RANGE,
    Flag,
    Given,
    closest_first,
    valid_flags,
)
from comfy._prompt_text import COUNT_CAP, number_text, parse_permutations
from comfy.generation_request import (
    SEED_MAX,
    GenerationRequest,
    format_request,
    request_from_json,
    request_to_json,
    with_new_seed,
)
from comfy.param_error import ParamError, ParamProblem, UseInstead
from comfy.profiles import ModelProfile, ParamLimits, StylePreset

__all__ = [
    "COUNT_CAP",
    "FLAGS",
    "FLAG_BY_NAME",
    "Flag",
    "GenerationRequest",
    "ParamError",
    "ParamProblem",
    "ParseContext",
    "UseInstead",
    "blend_request",
    "format_request",
    "number_text",
    "parse_prompt",
    "request_from_json",
    "request_to_json",
    "valid_flags",
    "with_new_seed",
]

_log = logging.getLogger(__name__)

MIN_SIDE = 64
MAX_SIDE = 16384  # ComfyUI's MAX_RESOLUTION


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
        raise ParamError(ParamProblem.BUG) from exc


def _parse(raw: str, ctx: ParseContext) -> list[GenerationRequest]:
    limits = ctx.limits
    hard_limit = 4 * limits.max_prompt_chars + 2000  # the whole message, with parameters and permutations
    if len(raw) > hard_limit:
        raise ParamError(ParamProblem.MESSAGE_TOO_LONG, count=len(raw), limit=hard_limit)
    permutations = parse_permutations(raw)
    if permutations.count > limits.max_permutations:
        raise ParamError(
            ParamProblem.TOO_MANY_PERMUTATIONS, count=permutations.count, limit=limits.max_permutations
        )
    prompts = permutations.expand()
    plans: list[_Plan] = []
    for prompt in prompts:
        try:
            plans.append(_plan(prompt, ctx))
        except ParamError as err:
            if len(prompts) == 1:
                raise
            raise err.in_permutation(prompt) from None
    jobs = sum(plan.repeat for plan in plans)
    if jobs > limits.max_permutations:
        repeats = {plan.repeat for plan in plans}
        raise ParamError(
            ParamProblem.TOO_MANY_JOBS,
            count=jobs,
            limit=limits.max_permutations,
            prompts=len(plans),
            repeat=repeats.pop() if len(repeats) == 1 else None,
        )

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


@dataclass(frozen=True, slots=True)
class _Plan:
    """One permutation, validated: the request without its seed, how many jobs, and the seed if fixed."""

    request: GenerationRequest
    repeat: int
    seed: int | None


def _plan(prompt: str, ctx: ParseContext) -> _Plan:
    limits = ctx.limits
    text, given = values.split_parameters(prompt)
    if not text and not ctx.text_optional:
        raise ParamError(ParamProblem.NO_DESCRIPTION)
    get = given.get
    no = values.no_items(get("no"))
    length = len(text) + len(", ".join(no))
    if length > limits.max_prompt_chars:
        counted = "no" if no else None
        raise ParamError(
            ParamProblem.PROMPT_TOO_LONG, count=length, limit=limits.max_prompt_chars, flag=counted
        )
    profile = _profile(get("model"), ctx)
    style = _style(get("style"), ctx)
    aspect = values.aspect(given["ar"], limits) if "ar" in given else None
    width, height = _size(profile, aspect)
    seed = None if "seed" not in given else values.whole(given["seed"], 0, SEED_MAX, 0)
    chaos = values.whole(get("chaos"), 0, 100, 0)
    stylize = values.whole(get("stylize"), 0, 1000, 100)
    quality = values.quality(get("quality"))
    repeat = values.whole(get("repeat"), 1, limits.max_repeat, 1)

    if "steps" in given:
        steps = values.whole(given["steps"], 1, MAX_STEPS, 0)
    else:
        steps = min(MAX_STEPS, max(1, math.floor(profile.steps * quality + 0.5)))
    if "cfg" in given:
        cfg = values.fraction(given["cfg"], *CFG_RANGE)
    else:
        cfg = _derived_cfg(profile.cfg, stylize, chaos)
    sampler = values.sampler_name(get("sampler"), ctx.samplers, profile.sampler)
    scheduler = values.sampler_name(get("scheduler"), ctx.schedulers, profile.scheduler)
    if "tile" in given:
        _check_tile(given["tile"], profile, ctx)

    image_weight: float | None = None
    denoise = 1.0
    if "iw" in given:
        if not ctx.has_image:
            raise ParamError(ParamProblem.NEEDS_IMAGE, flag="iw")
        image_weight = values.fraction(given["iw"], 0, IW_MAX)
    elif ctx.has_image:
        image_weight = 1.0
    if image_weight is not None:
        denoise = round(min(1.0, max(0.1, 1.0 - 0.3 * image_weight)), 3)
    zoom = _zoom(given.get("zoom"), ctx)

    positive, negative_parts = values.weighted(text)
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


def _profile(given: Given | None, ctx: ParseContext) -> ModelProfile:
    models = list(ctx.models)
    if not models:
        raise ParamError(ParamProblem.NO_MODELS)
    by_name = {m.name.lower(): m for m in models}
    if given is not None:
        return by_name[values.pick([m.name for m in models], given).lower()]
    if ctx.default_model is not None:
        chosen = by_name.get(ctx.default_model.lower())
        if chosen is not None:
            return chosen
        _log.warning("default model %r is not configured; using %r", ctx.default_model, models[0].name)
    return models[0]


def _style(given: Given | None, ctx: ParseContext) -> StylePreset | None:
    if given is None:
        return None
    styles = list(ctx.styles)
    name = values.pick([s.name for s in styles], given)
    return next(s for s in styles if s.name == name)


def _check_tile(given: Given, profile: ModelProfile, ctx: ParseContext) -> None:
    """`--tile` takes no value, and only models whose templates support it can tile."""
    if given.value:
        raise ParamError(
            ParamProblem.TAKES_NO_VALUE, flag=given.name, spelling=given.spelling, value=given.value
        )
    tiling = {name.lower() for name in ctx.tile_models}
    if profile.name.lower() not in tiling:
        tilers = [m.name for m in ctx.models if m.name.lower() in tiling]
        raise ParamError(
            ParamProblem.TILE_UNAVAILABLE,
            flag="tile",
            value=profile.name,
            choices=closest_first(tilers, profile.name),
        )


def _zoom(given: Given | None, ctx: ParseContext) -> float | None:
    """`--zoom`: required in a Custom Zoom's prompt, refused anywhere else."""
    low, high = ZOOM_RANGE
    if given is None:
        if ctx.custom_zoom:
            raise ParamError(ParamProblem.NEEDS_ZOOM, flag="zoom", low=low, high=high)
        return None
    if not ctx.custom_zoom:
        raise ParamError(ParamProblem.ONLY_IN_CUSTOM_ZOOM, flag="zoom")
    return values.fraction(given, low, high)


def _around(prefix: str, text: str, suffix: str) -> str:
    """`text` between a style's prefix and suffix, with a space where the preset doesn't bring one."""

    def join(left: str, right: str) -> str:
        if not left or not right:
            return left + right
        if left[-1].isspace() or right[0].isspace() or right[0] in ",.;:!?)":
            return left + right
        return f"{left} {right}"

    return join(join(prefix, text), suffix)


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
