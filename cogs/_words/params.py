"""The words members read when the parser refuses a prompt (`ParamError`) or a follow-up cannot be rendered."""

from __future__ import annotations

from typing import Final, assert_never

from comfy.params import COUNT_CAP, FLAG_BY_NAME, FLAGS, ParamError, ParamProblem, UseInstead, number_text
from comfy.render import RenderError, RenderProblem

_SHOWN_NAMES: Final = 8
_PERMUTATION_CHARS: Final = 80
_DESCRIPTION_FIRST: Final = "Put your description before the parameters."
_LONG_DASH: Final = (
    " (A long dash right before a word is read as `--`, since phones turn `--` into one; "
    "put a space after it if it belongs to your description.)"
)


def param_error_text(error: ParamError) -> str:
    """What the parser could not read and what it takes, for the member who wrote the prompt."""
    text = _problem_text(error)
    if error.permutation is not None:
        return f"In the permutation {_shown(error.permutation, _PERMUTATION_CHARS)}: {text}"
    return text


def _problem_text(e: ParamError) -> str:
    spelling = f"`{e.spelling}`"
    match e.problem:
        case ParamProblem.UNKNOWN_PARAMETER:
            hint = ""
            if e.suggestion is not None and e.value is not None:
                hint = f" Did you mean `{e.suggestion} {e.value}` (with a space)?"
            elif e.suggestion is not None:
                hint = f" Did you mean `{e.suggestion}`?"
            return _unknown_parameter(e, hint)
        case ParamProblem.NOT_USED_HERE:
            instead = f" This bot doesn't use it: {_instead(e.instead)}." if e.instead is not None else ""
            return _unknown_parameter(e, instead)
        case ParamProblem.GIVEN_TWICE:
            differ = (e.first_spelling or "").lower() != (e.spelling or "").lower()
            also = f" (as `{e.first_spelling}` and {spelling})" if differ else ""
            return f"`--{e.flag}` is given twice{also}; give it once."
        case ParamProblem.NEEDS_VALUE:
            return f"{spelling} needs a value, e.g. `{_example(e.flag)}`."
        case ParamProblem.TEXT_AFTER_PARAMETER:
            return (
                f"{spelling} takes one value, but it is followed by {_shown(e.value)}. {_DESCRIPTION_FIRST}"
            )
        case ParamProblem.TAKES_NO_VALUE:
            return f"{spelling} takes no value, but it is followed by {_shown(e.value)}. {_DESCRIPTION_FIRST}"
        case ParamProblem.BAD_NUMBER | ParamProblem.OUT_OF_RANGE:
            return f"{spelling} must be {_allowed_numbers(e)}; you gave {_shown(e.value)}."
        case ParamProblem.BAD_ASPECT:
            return f"{spelling} must be two whole numbers like `16:9` or `2:3`; you gave {_shown(e.value)}."
        case ParamProblem.ASPECT_OUT_OF_RANGE:
            widest = number_text(e.high or 0)
            return (
                f"`{e.spelling} {e.value}` is out of range: the aspect ratio may go from "
                f"1:{widest} (tall) to {widest}:1 (wide)."
            )
        case ParamProblem.NEEDS_NAME:
            return f"{spelling} needs a {e.flag} name: {_names(e.choices)}."
        case ParamProblem.NO_CHOICES:
            return f"There are no {e.flag}s on this server, so {spelling} can't be used."
        case ParamProblem.UNKNOWN_NAME:
            plural = f"{e.flag}s".capitalize()
            return f"Unknown {e.flag} {_shown(e.value)}. {plural} you can use: {_names(e.choices)}."
        case ParamProblem.BAD_NAME:
            return (
                f"{spelling} must be a {e.flag} name (letters, digits and `_`); you gave {_shown(e.value)}."
            )
        case ParamProblem.NO_MODELS:
            return "No models are set up on this server yet; ask an admin to add one."
        case ParamProblem.NOTHING_TO_LEAVE_OUT:
            return f"{spelling} needs something to leave out, e.g. `{_example('no')}`."
        case ParamProblem.TILE_UNAVAILABLE:
            where = f"Models that can: {_names(e.choices)}." if e.choices else "No model here can."
            return f"`--tile` (seamless tiles) isn't available for the model `{e.value}`. {where}"
        case ParamProblem.NEEDS_IMAGE:
            return "`--iw` (image weight) only works together with an image prompt; attach an image."
        case ParamProblem.NEEDS_ZOOM:
            return (
                f"Custom Zoom needs `--zoom` with a number from {number_text(e.low or 0)} to "
                f"{number_text(e.high or 0)}, e.g. `{_example('zoom')}`."
            )
        case ParamProblem.ONLY_IN_CUSTOM_ZOOM:
            return "`--zoom` only works in Custom Zoom, under an upscaled image."
        case ParamProblem.NO_DESCRIPTION:
            return (
                "Your prompt has no description: write what to draw first, then the parameters, "
                "e.g. `a lighthouse at dusk --ar 16:9`."
            )
        case ParamProblem.PROMPT_TOO_LONG:
            counted = " (description and `--no` together)" if e.flag == "no" else ""
            return f"Your prompt is {e.count or 0:,} characters long{counted}; at most {e.limit or 0:,} are allowed."
        case ParamProblem.MESSAGE_TOO_LONG:
            return (
                f"This prompt is {e.count or 0:,} characters long with its parameters; "
                f"at most {e.limit or 0:,} are allowed."
            )
        case ParamProblem.WEIGHT_OUT_OF_RANGE:
            return (
                f"The weight in {_shown(e.value)} is out of range: "
                f"`::` weights go from {number_text(e.low or 0)} to {number_text(e.high or 0)}."
            )
        case ParamProblem.WEIGHTS_NOT_POSITIVE:
            return (
                f"The `::` weights add up to {number_text(e.total or 0)}; they must add up to more than 0. "
                "Give the main part more weight, e.g. `space ship::2 planets::-0.5`."
            )
        case ParamProblem.TOO_MANY_PERMUTATIONS:
            count = e.count or 0
            many = f"{count:,}" if count < COUNT_CAP else "over a trillion"
            return (
                f"This prompt's `{{a, b}}` permutations make {many} prompts; at most "
                f"{e.limit} are allowed. Use fewer options."
            )
        case ParamProblem.TOO_MANY_JOBS:
            how = (
                f"{e.prompts} prompts × `--repeat {e.repeat}`"
                if e.repeat is not None
                else f"{e.prompts} prompts with their `--repeat`s"
            )
            return f"{how} make {e.count} jobs; at most {e.limit} are allowed per prompt."
        case ParamProblem.BUG:
            return (
                "Sorry, this prompt could not be read because of a bug in the bot (it has been logged). "
                "Try writing it differently."
            )
    assert_never(e.problem)


def render_error_text(error: RenderError) -> str:
    """Why a follow-up cannot be made of its image, as the end of a sentence (`That can't be done: ...`)."""
    match error.problem:
        case RenderProblem.UNKNOWN_ACTION:
            return f"unknown action {error.action!r}; allowed: {', '.join(error.choices)}"
        case RenderProblem.NEEDS_SOURCE_IMAGE:
            return f"{error.kind} needs a source image"
        case RenderProblem.ALREADY_LARGEST:
            return f"this image is already as large as allowed ({error.side} pixels a side)"
        case RenderProblem.CANVAS_TOO_LARGE:
            return f"the picture cannot grow past {error.side} pixels a side; try zooming out"
    assert_never(error.problem)


def _unknown_parameter(e: ParamError, hint: str) -> str:
    if not (e.spelling or "").startswith("--"):
        hint += _LONG_DASH
    return f"Unknown parameter {_shown(e.spelling)}.{hint} Parameters you can use: {_flag_list()}."


def _instead(instead: UseInstead) -> str:
    match instead:
        case UseInstead.MODEL:
            return "models are chosen with `--model NAME`"
        case UseInstead.QUALITY:
            return "use `--quality 2` for more steps"
        case UseInstead.UPSCALE_BUTTONS:
            return "upscales are the U buttons under the grid"
    assert_never(instead)


def _flag_list() -> str:
    return ", ".join(
        f"`--{flag.name}`" + (f" (`--{'`, `--'.join(flag.aliases)}`)" if flag.aliases else "")
        for flag in FLAGS
    )


def _example(flag: str | None) -> str:
    return FLAG_BY_NAME[flag or ""].example


def _allowed_numbers(e: ParamError) -> str:
    if e.choices:  # as Midjourney writes them: `.25`, not `0.25`
        shown = [
            f"`{choice.removeprefix('0')}`" if choice.startswith("0.") else f"`{choice}`"
            for choice in e.choices
        ]
        return f"one of {', '.join(shown[:-1])} or {shown[-1]}"
    low, high = number_text(e.low or 0), number_text(e.high or 0)
    if e.whole:
        return f"a whole number from {low} to {high}"
    return f"a number from {low} to {high} (like `1` or `1.5`)"


def _shown(value: str | None, limit: int = 40) -> str:
    """A member's value made safe to show inside Discord inline code."""
    value = " ".join((value or "").replace("`", "'").split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return f"`{value}`"


def _names(names: tuple[str, ...]) -> str:
    """The first few names (the parser puts the closest to what was typed first), and how many more."""
    shown = ", ".join(f"`{n}`" for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f" (and {more} more)" if more > 0 else "")
