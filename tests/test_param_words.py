"""The words members read for a refused prompt or follow-up: every problem, word for word, from its facts."""

from __future__ import annotations

import pytest

from bot.reasons import Failure, FailureKind
from cogs._words.failures import failure_text
from cogs._words.params import param_error_text, render_error_text
from comfy.actions import ACTIONS
from comfy.params import ParamError, ParamProblem, parse_prompt
from comfy.profiles import ParamLimits
from comfy.render import MAX_CANVAS_SIDE, RenderError, RenderProblem, kind_for
from tests.test_params import make_ctx

_PARAMETERS = (
    "Parameters you can use: `--ar` (`--aspect`), `--seed`, `--no`, `--chaos` (`--c`), `--stylize` (`--s`), "
    "`--quality` (`--q`), `--steps`, `--cfg`, `--sampler`, `--scheduler`, `--repeat` (`--r`), `--model`, "
    "`--style`, `--tile`, `--iw`, `--zoom`."
)
_LONG_DASH = (
    "(A long dash right before a word is read as `--`, since phones turn `--` into one; "
    "put a space after it if it belongs to your description.)"
)
_SMALL = {"limits": ParamLimits(max_permutations=4, max_prompt_chars=40)}

# (prompt, context overrides, the problem, the words members have always read)
CASES: list[tuple[str, dict[str, object], ParamProblem, str]] = [
    ("a --sed 4", {}, ParamProblem.UNKNOWN_PARAMETER, f"Unknown parameter `--sed`. Did you mean `--seed`? {_PARAMETERS}"),
    ("a --fast", {}, ParamProblem.UNKNOWN_PARAMETER, f"Unknown parameter `--fast`. {_PARAMETERS}"),
    (
        "a —ar16:9",
        {},
        ParamProblem.UNKNOWN_PARAMETER,
        f"Unknown parameter `—ar16:9`. Did you mean `--ar 16:9` (with a space)? {_LONG_DASH} {_PARAMETERS}",
    ),
    (
        "a --v 6",
        {},
        ParamProblem.NOT_USED_HERE,
        f"Unknown parameter `--v`. This bot doesn't use it: models are chosen with `--model NAME`. {_PARAMETERS}",
    ),
    (
        "a --hd",
        {},
        ParamProblem.NOT_USED_HERE,
        f"Unknown parameter `--hd`. This bot doesn't use it: use `--quality 2` for more steps. {_PARAMETERS}",
    ),
    (
        "a --upbeta",
        {},
        ParamProblem.NOT_USED_HERE,
        "Unknown parameter `--upbeta`. This bot doesn't use it: upscales are the U buttons under the grid. "
        + _PARAMETERS,
    ),
    ("a --seed 1 --seed 2", {}, ParamProblem.GIVEN_TWICE, "`--seed` is given twice; give it once."),
    (
        "a --ar 1:1 --aspect 2:3",
        {},
        ParamProblem.GIVEN_TWICE,
        "`--ar` is given twice (as `--ar` and `--aspect`); give it once.",
    ),
    ("a --seed", {}, ParamProblem.NEEDS_VALUE, "`--seed` needs a value, e.g. `--seed 42`."),
    (
        "a --seed 5 more text",
        {},
        ParamProblem.TEXT_AFTER_PARAMETER,
        "`--seed` takes one value, but it is followed by `5 more text`. Put your description before the parameters.",
    ),
    (
        "a --tile seamless",
        {},
        ParamProblem.TAKES_NO_VALUE,
        "`--tile` takes no value, but it is followed by `seamless`. Put your description before the parameters.",
    ),
    ("a --c lots", {}, ParamProblem.BAD_NUMBER, "`--c` must be a whole number from 0 to 100; you gave `lots`."),
    ("a --q 3", {}, ParamProblem.OUT_OF_RANGE, "`--q` must be one of `.25`, `.5`, `1` or `2`; you gave `3`."),
    (
        "a --cfg 31",
        {},
        ParamProblem.OUT_OF_RANGE,
        "`--cfg` must be a number from 1 to 30 (like `1` or `1.5`); you gave `31`.",
    ),
    (
        "a --ar 3x2",
        {},
        ParamProblem.BAD_ASPECT,
        "`--ar` must be two whole numbers like `16:9` or `2:3`; you gave `3x2`.",
    ),
    (
        "a --ar 9 : 1",
        {},
        ParamProblem.ASPECT_OUT_OF_RANGE,
        "`--ar 9:1` is out of range: the aspect ratio may go from 1:4 (tall) to 4:1 (wide).",
    ),
    ("a --model", {}, ParamProblem.NEEDS_NAME, "`--model` needs a model name: `sd15`, `SDXL-Base`, `small`."),
    (
        "a --style cine",
        {"styles": ()},
        ParamProblem.NO_CHOICES,
        "There are no styles on this server, so `--style` can't be used.",
    ),
    (
        "a --sampler eulr",
        {},
        ParamProblem.UNKNOWN_NAME,
        "Unknown sampler `eulr`. Samplers you can use: `euler`, `euler_ancestral`, `dpmpp_2m`, "
        "`dpmpp_2m_sde`, `ddim`, `uni_pc`, `lcm`, `heun` (and 1 more).",
    ),
    (
        "a --scheduler bad!",
        {"schedulers": None},
        ParamProblem.BAD_NAME,
        "`--scheduler` must be a scheduler name (letters, digits and `_`); you gave `bad!`.",
    ),
    ("a", {"models": ()}, ParamProblem.NO_MODELS, "No models are set up on this server yet; ask an admin to add one."),
    ("a --no , ,", {}, ParamProblem.NOTHING_TO_LEAVE_OUT, "`--no` needs something to leave out, e.g. `--no people, text`."),
    (
        "a --tile --model small",
        {},
        ParamProblem.TILE_UNAVAILABLE,
        "`--tile` (seamless tiles) isn't available for the model `small`. Models that can: `sd15`.",
    ),
    (
        "a --tile",
        {"tile_models": frozenset()},
        ParamProblem.TILE_UNAVAILABLE,
        "`--tile` (seamless tiles) isn't available for the model `sd15`. No model here can.",
    ),
    (
        "a --iw 1",
        {},
        ParamProblem.NEEDS_IMAGE,
        "`--iw` (image weight) only works together with an image prompt; attach an image.",
    ),
    (
        "a",
        {"custom_zoom": True},
        ParamProblem.NEEDS_ZOOM,
        "Custom Zoom needs `--zoom` with a number from 1 to 2, e.g. `--zoom 1.5`.",
    ),
    (
        "a --zoom 1.5",
        {},
        ParamProblem.ONLY_IN_CUSTOM_ZOOM,
        "`--zoom` only works in Custom Zoom, under an upscaled image.",
    ),
    (
        "--ar 16:9",
        {},
        ParamProblem.NO_DESCRIPTION,
        "Your prompt has no description: write what to draw first, then the parameters, "
        "e.g. `a lighthouse at dusk --ar 16:9`.",
    ),
    ("x" * 41, _SMALL, ParamProblem.PROMPT_TOO_LONG, "Your prompt is 41 characters long; at most 40 are allowed."),
    (
        "x" * 30 + " --no " + "y" * 20,
        _SMALL,
        ParamProblem.PROMPT_TOO_LONG,
        "Your prompt is 50 characters long (description and `--no` together); at most 40 are allowed.",
    ),
    (
        "{a,b}" * 5000,
        {},
        ParamProblem.MESSAGE_TOO_LONG,
        "This prompt is 25,000 characters long with its parameters; at most 8,000 are allowed.",
    ),
    (
        "a::11",
        {},
        ParamProblem.WEIGHT_OUT_OF_RANGE,
        "The weight in `a::11` is out of range: `::` weights go from -10 to 10.",
    ),
    (
        "a::-2.5 b::1",
        {},
        ParamProblem.WEIGHTS_NOT_POSITIVE,
        "The `::` weights add up to -1.5; they must add up to more than 0. "
        "Give the main part more weight, e.g. `space ship::2 planets::-0.5`.",
    ),
    (
        "{a,b}{c,d}{e,f}",
        _SMALL,
        ParamProblem.TOO_MANY_PERMUTATIONS,
        "This prompt's `{a, b}` permutations make 8 prompts; at most 4 are allowed. Use fewer options.",
    ),
    (
        "{a,b}" * 45 + " x",
        {},
        ParamProblem.TOO_MANY_PERMUTATIONS,
        "This prompt's `{a, b}` permutations make over a trillion prompts; at most 16 are allowed. "
        "Use fewer options.",
    ),
    (
        "{a,b} --r 3",
        _SMALL,
        ParamProblem.TOO_MANY_JOBS,
        "2 prompts × `--repeat 3` make 6 jobs; at most 4 are allowed per prompt.",
    ),
    (
        "{x, y} a --r {1, 4}",
        _SMALL,
        ParamProblem.TOO_MANY_JOBS,
        "4 prompts with their `--repeat`s make 10 jobs; at most 4 are allowed per prompt.",
    ),
    (
        "{a, b} --seed x",
        {},
        ParamProblem.BAD_NUMBER,
        "In the permutation `a --seed x`: `--seed` must be a whole number from 0 to 4294967295; you gave `x`.",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "overrides", "problem", "words"), CASES, ids=lambda v: str(v)[:30])
def test_each_refusal_reads_as_it_always_has(
    raw: str, overrides: dict[str, object], problem: ParamProblem, words: str
) -> None:
    with pytest.raises(ParamError) as caught:
        parse_prompt(raw, make_ctx(**overrides))
    assert caught.value.problem is problem
    assert param_error_text(caught.value) == words


def test_every_problem_is_pinned_by_a_case() -> None:
    pinned = {problem for _, _, problem, _ in CASES} | {ParamProblem.BUG}  # BUG: tests/test_params.py
    assert pinned == set(ParamProblem)


def test_a_refusal_carries_facts_and_logs_them_without_markup() -> None:
    with pytest.raises(ParamError) as caught:
        parse_prompt("a {cat, dog} --seed -1", make_ctx())
    error = caught.value
    assert (error.problem, error.flag, error.spelling, error.value) == (
        ParamProblem.OUT_OF_RANGE,
        "seed",
        "--seed",
        "-1",
    )
    assert (error.low, error.high, error.whole, error.permutation) == (0, 4294967295, True, "a cat --seed -1")
    assert str(error) == (
        "out_of_range (flag='seed', spelling='--seed', value='-1', low=0, high=4294967295, whole=True, "
        "permutation='a cat --seed -1')"
    )


def test_values_are_shown_safely_inside_inline_code() -> None:
    with pytest.raises(ParamError) as caught:
        parse_prompt("a --chaos `x`" + "y" * 60, make_ctx())
    words = param_error_text(caught.value)
    assert words.endswith("you gave `'x'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy…`.")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            RenderError(RenderProblem.CANVAS_TOO_LARGE, side=4096),
            "the picture cannot grow past 4096 pixels a side; try zooming out",
        ),
        (
            RenderError(RenderProblem.ALREADY_LARGEST, side=4096),
            "this image is already as large as allowed (4096 pixels a side)",
        ),
        (RenderError(RenderProblem.NEEDS_SOURCE_IMAGE, kind="upscale"), "upscale needs a source image"),
    ],
)
def test_render_refusals_read_as_they_always_have(error: RenderError, words: str) -> None:
    assert render_error_text(error) == words


def test_an_unknown_action_names_the_allowed_ones() -> None:
    with pytest.raises(RenderError) as caught:
        kind_for("reroll")
    assert caught.value.problem is RenderProblem.UNKNOWN_ACTION and "upscale_2x" in caught.value.choices
    assert (
        render_error_text(caught.value)
        == f"unknown action 'reroll'; allowed: {', '.join(caught.value.choices)}"
    )


@pytest.mark.parametrize(
    "error",
    [
        RenderError(RenderProblem.CANVAS_TOO_LARGE, side=MAX_CANVAS_SIDE),
        RenderError(RenderProblem.ALREADY_LARGEST, side=MAX_CANVAS_SIDE),
        RenderError(RenderProblem.NEEDS_SOURCE_IMAGE, kind="zoom"),
        RenderError(RenderProblem.UNKNOWN_ACTION, action="gone"),
    ],
    ids=lambda e: e.problem.value,
)
def test_a_job_that_cannot_be_rendered_fails_with_the_same_words_after_the_store(error: RenderError) -> None:
    stored = Failure.decode(Failure(FailureKind.NOT_RENDERABLE, error.encode()).encode())
    decoded = RenderError.decode(stored.detail)
    assert decoded is not None and decoded.problem is error.problem
    words = failure_text(stored)
    if error.problem is RenderProblem.UNKNOWN_ACTION:  # the allowed ones are those of this version
        allowed = ", ".join(action.name for action in ACTIONS if action.from_image)
        assert words == f"unknown action 'gone'; allowed: {allowed}"
    else:
        assert words == render_error_text(error)


def test_a_not_renderable_failure_this_version_cannot_read_shows_its_detail() -> None:
    assert failure_text(Failure(FailureKind.NOT_RENDERABLE, "melted/3")) == "melted/3"
    assert failure_text(Failure(FailureKind.NOT_RENDERABLE, "canvas_too_large/big")) == "canvas_too_large/big"
