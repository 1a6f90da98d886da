"""Why a prompt is refused, as facts: `ParamError` and its `ParamProblem` (cogs/_words/params.py words them)."""

from __future__ import annotations

from enum import StrEnum


class ParamProblem(StrEnum):
    """What is wrong with a prompt; the fields of `ParamError` each problem fills are listed.

    `flag` is the parameter's canonical name (`seed`), `spelling` how it was typed (`--Seed`, `—s`).
    """

    # the parameters as typed
    UNKNOWN_PARAMETER = "unknown_parameter"  # spelling (with its dash); suggestion: the closest spelling,
    # or the parameter glued to its value (`--ar16:9`), the value then in `value`
    NOT_USED_HERE = "not_used_here"  # spelling: a Midjourney parameter this bot has no use for; instead
    GIVEN_TWICE = "given_twice"  # flag; first_spelling, spelling: as typed the first and the second time
    NEEDS_VALUE = "needs_value"  # flag, spelling
    TEXT_AFTER_PARAMETER = "text_after_parameter"  # flag, spelling; value: the value and the text after it
    TAKES_NO_VALUE = "takes_no_value"  # flag, spelling (of `--tile`); value: the text after it
    # numbers: low and high, `whole` for whole numbers, or choices (`--quality`'s values)
    BAD_NUMBER = "bad_number"  # flag, spelling, value: not a number at all
    OUT_OF_RANGE = "out_of_range"  # flag, spelling, value: a number, but not one of those allowed
    BAD_ASPECT = "bad_aspect"  # flag, spelling, value: not `W:H`
    ASPECT_OUT_OF_RANGE = "aspect_out_of_range"  # flag, spelling; value: `W:H` as read; high: the widest
    # names: of a model, style, sampler or scheduler (the flag says which)
    NEEDS_NAME = "needs_name"  # flag, spelling; choices: the names
    NO_CHOICES = "no_choices"  # flag, spelling: the server has none of them
    UNKNOWN_NAME = "unknown_name"  # flag, spelling, value; choices: the names, the closest to value first
    BAD_NAME = "bad_name"  # flag, spelling, value: not a name (the server's list is not known)
    NO_MODELS = "no_models"  # the server has no model at all
    NOTHING_TO_LEAVE_OUT = "nothing_to_leave_out"  # flag, spelling: `--no` with only commas
    # what the parameters may be used with
    TILE_UNAVAILABLE = "tile_unavailable"  # value: the model; choices: the models that can tile
    NEEDS_IMAGE = "needs_image"  # flag (`iw`): only with an image prompt
    NEEDS_ZOOM = "needs_zoom"  # flag (`zoom`), low, high: a Custom Zoom's prompt without `--zoom`
    ONLY_IN_CUSTOM_ZOOM = "only_in_custom_zoom"  # flag (`zoom`): given anywhere else
    # the description and the whole prompt
    NO_DESCRIPTION = "no_description"
    PROMPT_TOO_LONG = "prompt_too_long"  # count, limit: characters; flag `no` when its items count too
    MESSAGE_TOO_LONG = "message_too_long"  # count, limit: characters, with the parameters
    WEIGHT_OUT_OF_RANGE = "weight_out_of_range"  # value: `part::weight`; low, high
    WEIGHTS_NOT_POSITIVE = "weights_not_positive"  # total: the `::` weights added up
    TOO_MANY_PERMUTATIONS = "too_many_permutations"  # count (saturated at COUNT_CAP), limit: prompts
    TOO_MANY_JOBS = "too_many_jobs"  # count, limit: jobs; prompts; repeat (None when they differ)
    BUG = "bug"  # the parser failed (logged); the cause is chained


class UseInstead(StrEnum):
    """What to use instead of a Midjourney parameter this bot has no use for (`NOT_USED_HERE`)."""

    MODEL = "model"  # `--v`, `--niji`: models are chosen with `--model`
    QUALITY = "quality"  # `--hd`: more steps come from `--quality`
    UPSCALE_BUTTONS = "upscale_buttons"  # `--uplight`, `--upbeta`: upscales are buttons under the grid


class ParamError(ValueError):
    """A prompt that cannot be generated. It carries the problem and its facts, never a sentence: the
    words are in cogs/_words/params.py. `str(exc)` is for logs and the terminal."""

    def __init__(
        self,
        problem: ParamProblem,
        *,
        flag: str | None = None,
        spelling: str | None = None,
        value: str | None = None,
        first_spelling: str | None = None,
        suggestion: str | None = None,
        instead: UseInstead | None = None,
        low: float | None = None,
        high: float | None = None,
        whole: bool = False,
        choices: tuple[str, ...] = (),
        count: int | None = None,
        limit: int | None = None,
        prompts: int | None = None,
        repeat: int | None = None,
        total: float | None = None,
        permutation: str | None = None,
    ) -> None:
        self.problem = problem
        self.flag = flag
        self.spelling = spelling
        self.value = value
        self.first_spelling = first_spelling
        self.suggestion = suggestion
        self.instead = instead
        self.low = low
        self.high = high
        self.whole = whole
        self.choices = choices
        self.count = count
        self.limit = limit
        self.prompts = prompts
        self.repeat = repeat
        self.total = total
        self.permutation = permutation  # the `{a, b}` permutation it was found in, when there are several
        super().__init__(problem.value)

    def __str__(self) -> str:
        """The problem and the facts it has, for logs and the terminal: `out_of_range (flag='seed', ...)`."""
        shown = ", ".join(
            f"{key}={str(fact) if isinstance(fact, StrEnum) else repr(fact)}"
            for key, fact in vars(self).items()
            if key != "problem"
            and not key.startswith("_")
            and fact is not None
            and fact is not False
            and fact != ()
        )
        return f"{self.problem.value} ({shown})" if shown else self.problem.value

    def in_permutation(self, prompt: str) -> ParamError:
        """The same problem, found in the permutation `prompt` of a prompt that makes several."""
        found = ParamError(self.problem)
        vars(found).update(vars(self), permutation=prompt)
        return found
