"""The Midjourney-style prompt parser: every parameter, permutations, multi-prompts, errors and round trips."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cogs._words.params import param_error_text
from comfy.params import (
    GenerationRequest,
    ParamError,
    ParamProblem,
    ParseContext,
    blend_request,
    format_request,
    parse_prompt,
    valid_flags,
    with_new_seed,
)
from comfy.profiles import ModelProfile, ParamLimits, StylePreset

SD15 = ModelProfile(name="sd15", checkpoint="sd15.safetensors", negative="blurry")
SDXL = ModelProfile(
    name="SDXL-Base", checkpoint="sdxl.safetensors", width=1024, height=1024, steps=30, cfg=6.5
)
SMALL = ModelProfile(name="small", checkpoint="small.safetensors", width=256, height=384, cfg=7.3)
CINE = StylePreset(name="Cine", prefix="cinematic still of", suffix=", film grain", negative="cartoon")
PLAIN = StylePreset(name="plain")
SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "ddim", "uni_pc", "lcm", "heun", "dpm_2")
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple")


def make_ctx(**overrides: object) -> ParseContext:
    """A server with three models, two styles, known samplers, and a seeded random source."""
    values: dict[str, object] = {
        "models": (SD15, SDXL, SMALL),
        "styles": (CINE, PLAIN),
        "samplers": SAMPLERS,
        "schedulers": SCHEDULERS,
        "tile_models": frozenset({"sd15"}),
        "rng": random.Random(1234),
    }
    values.update(overrides)
    return ParseContext(**values)  # type: ignore[arg-type]


def one(raw: str, **overrides: object) -> GenerationRequest:
    """Parse a prompt that must give exactly one request."""
    requests = parse_prompt(raw, make_ctx(**overrides))
    assert len(requests) == 1
    return requests[0]


def refused(raw: str, **overrides: object) -> str:
    """The words members read for the ParamError a prompt must raise (never a chained bug report)."""
    return param_error_text(refusal(raw, **overrides))


def refusal(raw: str, **overrides: object) -> ParamError:
    """The ParamError a prompt must raise (never a chained bug report)."""
    with pytest.raises(ParamError) as caught:
        parse_prompt(raw, make_ctx(**overrides))
    assert caught.value.__cause__ is None
    return caught.value


# ------------------------------------------------------------------------------------------ plain prompt


def test_plain_prompt_uses_the_default_model_settings_and_sets_a_seed() -> None:
    req = one("a lighthouse at dusk")
    assert (req.text, req.positive, req.negative) == (
        "a lighthouse at dusk",
        "a lighthouse at dusk",
        "blurry",
    )
    assert (req.model, req.checkpoint, req.width, req.height) == ("sd15", "sd15.safetensors", 512, 512)
    assert (req.steps, req.cfg, req.sampler, req.scheduler) == (20, 7.0, "euler", "normal")
    assert (req.batch_size, req.denoise, req.chaos, req.stylize, req.quality) == (4, 1.0, 0, 100, 1.0)
    assert req.aspect is None and req.style is None and req.no == () and not req.tile
    assert req.image_weight is None and req.explicit == frozenset()
    assert 0 <= req.seed <= 4294967295


def test_prompt_text_keeps_quotes_braces_backslashes_and_unicode_exactly() -> None:
    raw = '"quotes" {braces} \\ backslashes (weight:1.2) [x] café 🌊 — dash ::'
    assert one(raw).text == raw
    assert one('"quotes" {braces} \\ backslashes').positive == '"quotes" {braces} \\ backslashes'
    assert one("a \\(paren\\) and C:\\path\\file").positive == "a \\(paren\\) and C:\\path\\file"


def test_text_with_double_dash_inside_a_word_is_not_a_parameter() -> None:
    assert one("state-of--the-art robot --seed 3").text == "state-of--the-art robot"
    assert one("wait -- what --seed 3").text == "wait -- what"
    assert one("a -- 5 cat").text == "a -- 5 cat"


@pytest.mark.parametrize("raw", ["", "   ", "\n\t", "--ar 16:9", "  --seed 5 --no cats", "{,} --seed 1"])
def test_a_prompt_without_a_description_is_refused(raw: str) -> None:
    assert "no description" in refused(raw)


def test_a_prompt_longer_than_the_limit_is_refused_with_the_limit() -> None:
    limits = ParamLimits(max_prompt_chars=50)
    assert len(one("x" * 50, limits=limits).text) == 50
    message = refused("x" * 51, limits=limits)
    assert "51" in message and "50" in message
    message = refused("x" * 40 + " --no " + "y" * 20, limits=limits)
    assert "60 characters" in message and "--no" in message


def test_a_huge_message_is_refused_before_any_work() -> None:
    assert "characters long" in refused("{a,b}" * 5000)


# ---------------------------------------------------------------------------------------------- flags


def test_unknown_parameter_is_refused_by_name_with_the_valid_ones() -> None:
    message = refused("a cat --fast")
    assert "`--fast`" in message
    for flag in ("--ar", "--seed", "--no", "--chaos", "--stylize", "--quality", "--tile", "--iw"):
        assert f"`{flag}`" in message


def test_unknown_parameter_suggests_the_close_or_glued_spelling() -> None:
    assert "Did you mean `--seed`" in refused("a cat --sed 4")
    assert "Did you mean `--ar 16:9`" in refused("a cat --ar16:9")
    assert "--model" in refused("a cat --v 6")


def test_valid_flags_lists_every_spelling() -> None:
    flags = valid_flags()
    assert flags[:2] == ["--ar", "--aspect"]
    for spelling in ("--c", "--s", "--q", "--r", "--repeat", "--tile", "--iw", "--sampler", "--scheduler"):
        assert spelling in flags
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("a --seed 1 --seed 2", "`--seed` is given twice"),
        ("a --ar 1:1 --aspect 2:3", "as `--ar` and `--aspect`"),
        ("a --c 5 --chaos 6", "as `--c` and `--chaos`"),
        ("a --tile --TILE", "`--tile` is given twice"),
    ],
)
def test_a_parameter_given_twice_is_refused(raw: str, named: str) -> None:
    assert named in refused(raw)


@pytest.mark.parametrize("flag", ["--ar", "--seed", "--chaos", "--stylize", "--quality", "--steps", "--cfg"])
def test_a_parameter_without_its_value_is_refused_with_an_example(flag: str) -> None:
    message = refused(f"a cat {flag}")
    assert "needs a value" in message and "e.g." in message


def test_a_name_parameter_without_its_value_lists_the_names() -> None:
    assert "`sd15`, `SDXL-Base`, `small`" in refused("a cat --model")
    assert "`euler`" in refused("a cat --sampler --seed 1")


def test_parameter_names_ignore_case() -> None:
    req = one("a cat --AR 16:9 --Seed 9")
    assert req.aspect == (16, 9) and req.seed == 9


@pytest.mark.parametrize("dash", ["\u2014", "\u2013"])
def test_a_long_dash_before_a_letter_is_read_as_double_dash(dash: str) -> None:
    req = one(f"a cat {dash}ar 16:9 {dash}seed 5")
    assert (req.text, req.aspect, req.seed) == ("a cat", (16, 9), 5)


def test_a_long_dash_in_the_description_stays_text() -> None:
    assert (
        one("sea \u2014 calm, sky \u2013 red, x\u2014y").text == "sea \u2014 calm, sky \u2013 red, x\u2014y"
    )
    assert "long dash" in refused("the sea \u2014calm")


def test_description_after_a_parameter_is_refused_with_a_hint() -> None:
    message = refused("a cat --ar 16:9 sitting on a mat")
    assert "takes one value" in message and "description before the parameters" in message
    assert "takes no value" in refused("a cat --tile pattern")


# ---------------------------------------------------------------------------------------------- --ar


@pytest.mark.parametrize(
    ("model", "ratio", "size"),
    [
        ("sdxl-base", "16:9", (1344, 768)),
        ("sdxl-base", "9:16", (768, 1344)),
        ("sdxl-base", "1:1", (1024, 1024)),
        ("sdxl-base", "4:1", (2048, 512)),
        ("sd15", "2:3", (384, 576)),  # exactly 2:3 rather than 448x640 (1:1.43)
        ("sd15", "3:2", (576, 384)),
        ("sd15", "16:9", (704, 384)),
        ("small", "1:1", (312, 312)),  # a base under 512 rounds to multiples of 8
        ("small", "2:3", (256, 384)),
    ],
)
def test_aspect_ratio_keeps_the_model_area_and_rounds_the_sides(
    model: str, ratio: str, size: tuple[int, int]
) -> None:
    req = one(f"a cat --model {model} --ar {ratio}")
    assert (req.width, req.height) == size


def test_aspect_sides_never_go_below_64() -> None:
    tiny = ModelProfile(name="tiny", checkpoint="t.safetensors", width=64, height=64)
    req = one("a cat --ar 1:4", models=(tiny,))
    assert (req.width, req.height) == (64, 256)  # the short side stays 64 and the long one keeps 1:4
    req = one("a cat --ar 3:2", models=(tiny,))
    assert (req.width, req.height) == (96, 64)


def test_aspect_is_stored_reduced_and_the_alias_works() -> None:
    req = one("a cat --aspect 32:18")
    assert req.aspect == (16, 9) and req.explicit == {"ar"}


@pytest.mark.parametrize("value", ["16x9", "16:9.5", "wide", "-16:9", "16:", ":9", "0:1", "1:0", "1.5:1"])
def test_aspect_that_is_not_two_whole_numbers_is_refused(value: str) -> None:
    message = refused(f"a cat --ar {value}")
    assert "16:9" in message or "1:4" in message


@pytest.mark.parametrize("value", ["5:1", "1:5", "1000000:1"])
def test_aspect_beyond_the_limit_is_refused_with_the_allowed_range(value: str) -> None:
    message = refused(f"a cat --ar {value}")
    assert "1:4" in message and "4:1" in message


def test_aspect_limit_comes_from_the_config() -> None:
    assert "2:1" in refused("a cat --ar 3:1", limits=ParamLimits(max_aspect=2))
    assert "2.5:1" in refused("a cat --ar 3:1", limits=ParamLimits(max_aspect=2.5))


# ---------------------------------------------------------------------------------------------- --seed


def test_explicit_seed_is_used_and_recorded() -> None:
    assert one("a cat --seed 0").seed == 0
    req = one("a cat --seed 4294967295")
    assert req.seed == 4294967295 and "seed" in req.explicit
    assert one("a cat --seed 7.0").seed == 7


def test_random_seed_comes_from_the_injected_random_source() -> None:
    first = one("a cat", rng=random.Random(99)).seed
    assert first == one("a cat", rng=random.Random(99)).seed
    assert first == random.Random(99).randint(0, 4294967295)


@pytest.mark.parametrize(
    "value", ["-1", "4294967296", "1.5", "nan", "inf", "1e3", "0x10", "seven", "9" * 40, "1_000"]
)
def test_seed_outside_the_range_is_refused_with_the_range(value: str) -> None:
    assert "whole number from 0 to 4294967295" in refused(f"a cat --seed {value}")


# ------------------------------------------------------------------------------------------------ --no


def test_no_items_join_the_model_and_style_negatives() -> None:
    req = one("a cat --style cine --no dogs,  text , dogs")
    assert req.no == ("dogs", "text")
    assert req.negative == "blurry, cartoon, dogs, text"


def test_no_without_items_is_refused() -> None:
    assert "something to leave out" in refused("a cat --no , ,")


def test_negative_has_no_empty_parts_when_nothing_is_configured() -> None:
    assert one("a cat --model small").negative == ""
    assert one("a cat --model small --style plain --no x").negative == "x"


# --------------------------------------------------------------------------- --chaos --stylize --quality


def test_default_stylize_keeps_the_model_cfg_exactly() -> None:
    assert one("a cat --model small").cfg == 7.3
    assert one("a cat --model small --stylize 100").cfg == 7.3


@pytest.mark.parametrize(
    ("flags", "cfg"),
    [
        ("--s 0", 8.75),
        ("--s 1000", 3.5),
        ("--s 550", 5.25),
        ("--c 100", 4.2),
        ("--c 50", 5.6),
        ("--s 1000 --c 100", 2.1),
    ],
)
def test_stylize_and_chaos_lower_the_cfg(flags: str, cfg: float) -> None:
    assert one(f"a cat {flags}").cfg == cfg


def test_chaos_is_recorded_with_a_variation_strength() -> None:
    req = one("a cat --chaos 30")
    assert (req.chaos, req.variation_strength) == (30, 0.3)


def test_derived_cfg_never_goes_below_one() -> None:
    low = ModelProfile(name="flux", checkpoint="f.safetensors", cfg=1.5)
    assert one("a cat --s 1000 --c 100", models=(low,)).cfg == 1.0


@pytest.mark.parametrize(("flag", "steps"), [("--q .25", 5), ("--q .5", 10), ("--q 1", 20), ("--q 2", 40)])
def test_quality_multiplies_the_steps(flag: str, steps: int) -> None:
    assert one(f"a cat {flag}").steps == steps


def test_quality_steps_stay_within_1_and_150() -> None:
    many = ModelProfile(name="many", checkpoint="m.safetensors", steps=100)
    few = ModelProfile(name="few", checkpoint="f.safetensors", steps=1)
    assert one("a cat --quality 2", models=(many,)).steps == 150
    assert one("a cat --quality .25", models=(few,)).steps == 1


def test_explicit_cfg_and_steps_win_over_stylize_chaos_and_quality() -> None:
    req = one("a cat --s 1000 --c 100 --q 2 --cfg 6.5 --steps 12")
    assert (req.cfg, req.steps, req.stylize, req.chaos, req.quality) == (6.5, 12, 1000, 100, 2.0)


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [
        ("--chaos 101", "0 to 100"),
        ("--c -1", "0 to 100"),
        ("--c 2.5", "whole number from 0 to 100"),
        ("--stylize 1001", "0 to 1000"),
        ("--s nan", "0 to 1000"),
        ("--quality 3", "`.25`, `.5`, `1` or `2`"),
        ("--q 0.3", "`.25`, `.5`, `1` or `2`"),
        ("--steps 0", "1 to 150"),
        ("--steps 151", "1 to 150"),
        ("--cfg 0.5", "1 to 30"),
        ("--cfg 31", "1 to 30"),
        ("--cfg inf", "1 to 30"),
        ("--cfg 1e1", "1 to 30"),
        ("--cfg 7,5", "1 to 30"),
    ],
)
def test_out_of_range_numbers_are_refused_with_the_range(flags: str, allowed: str) -> None:
    assert allowed in refused(f"a cat {flags}")


def test_numbers_accept_leading_dot_and_decimals() -> None:
    assert one("a cat --q .5").quality == 0.5
    assert one("a cat --q 0.25").quality == 0.25
    assert one("a cat --cfg 6.5").cfg == 6.5
    assert one("a cat --cfg 12.").cfg == 12.0


# ---------------------------------------------------------------------------------- sampler, scheduler


def test_sampler_and_scheduler_match_the_backend_names_ignoring_case() -> None:
    req = one("a cat --sampler Euler_Ancestral --scheduler KARRAS")
    assert (req.sampler, req.scheduler) == ("euler_ancestral", "karras")


def test_unknown_sampler_lists_a_few_valid_names_closest_first() -> None:
    message = refused("a cat --sampler eular")
    assert message.index("`euler`") < message.index("`ddim`")
    assert "(and 1 more)" in message
    assert "`karras`" in refused("a cat --scheduler karas")


def test_sampler_is_accepted_when_the_backend_names_are_unknown() -> None:
    assert one("a cat --sampler my_custom.sampler", samplers=None).sampler == "my_custom.sampler"
    assert "sampler name" in refused("a cat --sampler ../x?", samplers=None)


# ------------------------------------------------------------------------------------------- --repeat


def test_repeat_makes_separate_requests_with_their_own_random_seeds() -> None:
    requests = parse_prompt("a cat --r 3", make_ctx())
    assert len(requests) == 3
    assert len({r.seed for r in requests}) == 3
    assert {r.text for r in requests} == {"a cat"}


def test_repeat_with_a_seed_counts_up_and_wraps_at_the_largest_seed() -> None:
    assert [r.seed for r in parse_prompt("a cat --repeat 3 --seed 10", make_ctx())] == [10, 11, 12]
    assert [r.seed for r in parse_prompt("a --r 2 --seed 4294967295", make_ctx())] == [4294967295, 0]


def test_repeat_above_the_limit_is_refused() -> None:
    assert "1 to 4" in refused("a cat --r 5")
    assert len(parse_prompt("a cat --r 6", make_ctx(limits=ParamLimits(max_repeat=6)))) == 6


def test_repeat_times_permutations_is_capped_and_the_error_names_both() -> None:
    message = refused("a {b, c, d, e, f} --r 4")
    assert "5 prompts" in message and "`--repeat 4`" in message and "20 jobs" in message and "16" in message
    assert "3 prompts with their" in refused(
        "{a --r 4, b --r 4, c --r 2}", limits=ParamLimits(max_permutations=8)
    )
    assert len(parse_prompt("a {b, c, d, e} --r 4", make_ctx())) == 16


# -------------------------------------------------------------------------------------- --model --style


def test_model_is_chosen_by_name_ignoring_case() -> None:
    req = one("a cat --model sdxl-BASE")
    assert (req.model, req.checkpoint, req.width, req.steps, req.cfg) == (
        "SDXL-Base",
        "sdxl.safetensors",
        1024,
        30,
        6.5,
    )


def test_unknown_model_lists_the_models() -> None:
    message = refused("a cat --model sd3")
    assert "`sd3`" in message and "`sd15`" in message and "`SDXL-Base`" in message


def test_a_users_default_model_replaces_the_first_one_and_a_stale_one_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert one("a cat", default_model="small").model == "small"
    assert one("a cat --model sd15", default_model="small").model == "sd15"
    with caplog.at_level(logging.WARNING, logger="comfy.params"):
        assert one("a cat", default_model="gone").model == "sd15"
    assert "gone" in caplog.text


def test_no_models_configured_is_a_readable_refusal() -> None:
    assert "No models" in refused("a cat", models=())


def test_style_wraps_the_prompt_and_adds_its_negative() -> None:
    req = one("a cat --style CINE")
    assert (req.style, req.positive, req.negative, req.text) == (
        "Cine",
        "cinematic still of a cat, film grain",
        "blurry, cartoon",
        "a cat",
    )


def test_unknown_style_and_missing_styles_are_refused() -> None:
    assert "`Cine`" in refused("a cat --style raw")
    assert "no styles" in refused("a cat --style raw", styles=())


# ----------------------------------------------------------------------------------------- --tile --iw


def test_tile_only_where_the_model_supports_it() -> None:
    assert one("a pattern --tile").tile
    message = refused("a pattern --tile --model small")
    assert "`small`" in message and "`sd15`" in message
    assert "No model" in refused("a pattern --tile", tile_models=frozenset())


@pytest.mark.parametrize(("iw", "denoise"), [("0", 1.0), ("1", 0.7), ("2", 0.4), ("3", 0.1), (".5", 0.85)])
def test_image_weight_maps_to_denoise(iw: str, denoise: float) -> None:
    req = one(f"a cat --iw {iw}", has_image=True)
    assert req.denoise == denoise and req.image_weight == float(iw)


def test_an_image_prompt_without_iw_uses_weight_one() -> None:
    req = one("a cat", has_image=True)
    assert (req.image_weight, req.denoise) == (1.0, 0.7)


def test_iw_without_an_image_or_out_of_range_is_refused() -> None:
    assert "image prompt" in refused("a cat --iw 1")
    assert "0 to 3" in refused("a cat --iw 3.5", has_image=True)


# ------------------------------------------------------------------------------------------ permutations


def texts(raw: str, **overrides: object) -> list[str]:
    return [r.text for r in parse_prompt(raw, make_ctx(**overrides))]


def test_permutations_make_one_request_per_option_in_order() -> None:
    assert texts("a {red, blue} car") == ["a red car", "a blue car"]
    assert texts("{a, b} {c, d}") == ["a c", "a d", "b c", "b d"]


def test_permutations_nest() -> None:
    assert texts("a {red, {dark, light} blue} car") == ["a red car", "a dark blue car", "a light blue car"]


def test_parameters_can_be_permuted() -> None:
    requests = parse_prompt("a car --ar {1:1, 16:9} {, --tile}", make_ctx())
    assert [(r.aspect, r.tile) for r in requests] == [
        ((1, 1), False),
        ((1, 1), True),
        ((16, 9), False),
        ((16, 9), True),
    ]


def test_escaped_braces_and_commas_are_literal() -> None:
    assert texts("a \\{red, blue\\} car") == ["a {red, blue} car"]
    assert texts("a {red\\, white, blue} car") == ["a red, white car", "a blue car"]
    assert texts("keep \\ this \\n and \\\\{x, y\\}") == ["keep \\ this \\n and \\{x, y}"]


@pytest.mark.parametrize(
    "raw", ["a {solo} car", "a {} car", "a { car", "a } car", "}{ x", "{{a}}", "a {b c} d"]
)
def test_braces_that_are_not_a_permutation_stay_literal(raw: str) -> None:
    assert texts(raw) == [raw]


def test_literal_braces_around_a_permutation_stay() -> None:
    assert texts("{x {a, b} y}") == ["{x a y}", "{x b y}"]
    assert texts("{a, b}}") == ["a}", "b}"]


def test_too_many_permutations_are_refused_with_both_numbers() -> None:
    message = refused("{a,b} {c,d} {e,f} {g,h} {i,j}")
    assert "32 prompts" in message and "16" in message
    assert "over a trillion" in refused("{a,b}" * 60)
    assert "17 prompts" in refused("{" + ",".join("x" * 17) + "}")


def test_deep_nesting_is_handled_without_recursion_errors() -> None:
    deep = "{" * 2999 + "a" + "}" * 2999
    assert texts(deep, limits=ParamLimits(max_prompt_chars=6000)) == [deep]
    nested = "x " + "{a, " * 1000 + "b" + "}" * 1000
    assert "prompts" in refused(nested, limits=ParamLimits(max_prompt_chars=6000))


def test_an_error_inside_one_permutation_names_it() -> None:
    assert "In the permutation `a --ar 9:1`" in refused("a --ar {1:1, 9:1}")


def test_permutations_get_separate_random_seeds_but_share_a_given_seed() -> None:
    assert len({r.seed for r in parse_prompt("{a, b, c}", make_ctx())}) == 3
    assert {r.seed for r in parse_prompt("{a, b, c} --seed 5", make_ctx())} == {5}


# ------------------------------------------------------------------------------------------ multi-prompts


def test_multi_prompt_weights_become_comfyui_weighted_text() -> None:
    req = one("space:: ship::2")
    assert req.positive == "(space:1), (ship:2)" and req.text == "space:: ship::2"


def test_negative_weights_go_to_the_negative_prompt() -> None:
    req = one("space ship::2 planets::-0.5 --no stars")
    assert req.positive == "(space ship:2)"
    assert req.negative == "blurry, stars, (planets:0.5)"


def test_weights_that_do_not_add_up_to_more_than_zero_are_refused() -> None:
    assert "add up to -0.5" in refused("a::0.5 b::-1")
    assert "add up to 0" in refused("a::1 b::-1")


def test_out_of_range_weight_is_refused() -> None:
    assert "-10 to 10" in refused("a::100 b")


def test_text_without_double_colon_is_untouched() -> None:
    assert one("time 12:30 (red:1.3) a:b").positive == "time 12:30 (red:1.3) a:b"


def test_style_goes_around_the_weighted_text() -> None:
    assert one("cat::2 dog --style cine").positive == "cinematic still of (cat:2), (dog:1), film grain"


# ------------------------------------------------------------------------------------ custom zoom, blend


def test_zoom_is_taken_only_in_a_custom_zoom_and_shown_last() -> None:
    req = one("a cat --seed 3 --zoom 1.5", custom_zoom=True)
    assert req.zoom == 1.5 and "zoom" in req.explicit
    assert format_request(req) == "a cat --seed 3 --zoom 1.5"
    assert parse_prompt(format_request(req), make_ctx(custom_zoom=True)) == [req]
    assert one("a cat --zoom 1", custom_zoom=True).zoom == 1.0
    assert one("a cat --zoom 2", custom_zoom=True).zoom == 2.0
    assert one("a cat").zoom is None


def test_zoom_outside_a_custom_zoom_is_refused_with_where_it_works() -> None:
    assert refused("a cat --zoom 2") == "`--zoom` only works in Custom Zoom, under an upscaled image."


@pytest.mark.parametrize("value", ["0.9", "2.1", "0", "x"])
def test_zoom_out_of_range_is_refused_with_the_range(value: str) -> None:
    assert refused(f"a cat --zoom {value}", custom_zoom=True) == (
        f"`--zoom` must be a number from 1 to 2 (like `1` or `1.5`); you gave `{value}`."
    )


def test_a_custom_zoom_without_zoom_is_refused_with_an_example() -> None:
    assert "Custom Zoom needs `--zoom`" in refused("a cat --seed 1", custom_zoom=True)


def test_parameters_alone_are_a_prompt_where_text_is_optional() -> None:
    req = one("--ar 3:2 --seed 4", text_optional=True)
    assert (req.text, req.positive, req.seed, req.aspect) == ("", "", 4, (3, 2))
    assert format_request(req) == "--ar 3:2 --seed 4"
    assert "no description" in refused("--ar 3:2 --seed 4")


def test_a_blend_request_has_no_text_and_the_model_area_in_the_asked_shape() -> None:
    square = blend_request(make_ctx(models=(SDXL,)))
    portrait = blend_request(make_ctx(models=(SDXL,)), (2, 3))
    landscape = blend_request(make_ctx(), (6, 4))
    assert (square.text, square.positive, square.model) == ("", "", "SDXL-Base")
    assert (square.width, square.height, square.steps, square.cfg) == (1024, 1024, 30, 6.5)
    assert (portrait.width, portrait.height) == (
        one("x --ar 2:3 --model sdxl-base").width,
        one("x --ar 2:3 --model sdxl-base").height,
    )
    assert landscape.aspect == (3, 2) and landscape.negative == "blurry"
    assert format_request(landscape) == f"--ar 3:2 --seed {landscape.seed}"


# ------------------------------------------------------------------------------------ format and reroll


def test_format_request_writes_the_typed_parameters_and_the_seed() -> None:
    req = one("a cat --aspect 32:18 --c 5 --s 250 --q .5 --no dogs, cats --model sdxl-base --seed 42")
    assert format_request(req) == (
        "a cat --model SDXL-Base --ar 16:9 --chaos 5 --stylize 250 --quality 0.5 --no dogs, cats --seed 42"
    )


def test_format_request_escapes_only_when_needed() -> None:
    assert format_request(one("{solo} x --seed 1")) == "{solo} x --seed 1"
    req = one("a \\{red, blue\\} car --seed 1")
    assert format_request(req) == "a \\{red, blue\\} car --seed 1"
    assert parse_prompt(format_request(req), make_ctx()) == [req]


def test_format_request_round_trips_every_permutation_and_repeat() -> None:
    ctx = make_ctx(has_image=True)
    raw = "a {red, \\{blue\\}} car:: sky::-0.5 --ar {1:1, 2:3} --r 2 --iw 2 --style cine --no x\\, y"
    for req in parse_prompt(raw, ctx):
        assert parse_prompt(format_request(req), ctx) == [req]


def test_with_new_seed_changes_only_the_seed() -> None:
    req = one("a cat --seed 5 --ar 16:9")
    rerolled = with_new_seed(req, random.Random(3))
    assert rerolled.seed == random.Random(3).randint(0, 4294967295)
    assert "seed" not in rerolled.explicit and "ar" in rerolled.explicit
    assert rerolled == GenerationRequest(**{**_fields(req), "seed": rerolled.seed})


def _fields(req: GenerationRequest) -> dict[str, object]:
    return {name: getattr(req, name) for name in GenerationRequest.__slots__}


# --------------------------------------------------------------------------------------- the safety net


class _Broken(Sequence[str]):
    """A sampler list that fails, standing in for a bug somewhere inside the parser."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: object) -> str:  # type: ignore[override]
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")


def test_an_unexpected_bug_still_reaches_the_user_as_param_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="comfy.params"), pytest.raises(ParamError) as caught:
        parse_prompt("a cat --sampler euler", make_ctx(samplers=_Broken()))
    assert caught.value.problem is ParamProblem.BUG and isinstance(caught.value.__cause__, RuntimeError)
    assert "bug" in param_error_text(caught.value)
    assert "unexpected error" in caplog.text


# ------------------------------------------------------------------------------------------ hypothesis

_ATOMS = [
    *valid_flags(),
    *(f"\u2014{f[2:]}" for f in ("ar", "seed", "no", "tile")),
    *(f"\u2013{f}" for f in ("q", "s", "c")),
    "--bogus", "--", "-", "\u2014", "\u2013", "---ar",
    "16:9", "1:1", "5:1", "0:0", "2:3", "7", "-1", ".5", "1.5", "2", "0", "150", "4294967296",
    "nan", "inf", "-inf", "1e999", "9" * 30, "0x1F",
    "{", "}", ",", "{a, b}", "{x,{y,z}}", "\\{", "\\}", "\\,", "\\", "::", "::2", "::-0.5", "::-9", "::1e3",
    "a", "red car", "sd15", "SDXL-Base", "cine", "euler", "karras", '"', "'", "(", ")", "é", "🙂", "\n", "\t",
]  # fmt: skip
_SEPARATORS = st.sampled_from(["", " ", " ", "  ", "\n", "\u00a0"])
flaggy_prompts = st.lists(
    st.tuples(st.one_of(st.sampled_from(_ATOMS), st.text(max_size=4)), _SEPARATORS), max_size=24
).map(lambda parts: "".join(atom + sep for atom, sep in parts))
any_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from("{},:\\-\u2014\u2013 \"'")), max_size=200
)
contexts = st.builds(
    make_ctx,
    has_image=st.booleans(),
    samplers=st.sampled_from([SAMPLERS, None]),
    limits=st.sampled_from(
        [ParamLimits(), ParamLimits(max_permutations=4, max_repeat=2, max_prompt_chars=40)]
    ),
    rng=st.randoms(use_true_random=False),
)


def _parses_or_refuses(raw: str, ctx: ParseContext) -> bool:
    """Check the parser's contract on one input; True when it was accepted, False when refused."""
    try:
        requests = parse_prompt(raw, ctx)
    except ParamError as err:
        assert err.__cause__ is None, f"a bug was caught by the safety net: {err.__cause__!r}"
        assert param_error_text(err) and str(err).startswith(err.problem.value)
        return False
    assert 1 <= len(requests) <= ctx.limits.max_permutations
    for req in requests:
        assert req.text and req.text == req.text.strip()
        assert 0 <= req.seed <= 4294967295 and 1 <= req.steps <= 150 and 1 <= req.cfg <= 30
        assert req.width >= 64 and req.height >= 64 and req.width % 8 == 0 and req.height % 8 == 0
        assert ", , " not in req.negative and not req.negative.startswith(", ")
    return True


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.one_of(any_text, flaggy_prompts), ctx=contexts)
def test_any_string_parses_or_raises_param_error(raw: str, ctx: ParseContext) -> None:
    _parses_or_refuses(raw, ctx)


_TEXT_ALPHABET = st.one_of(
    st.sampled_from("abc xyz{},\\\"'():;.!?é🙂\n"), st.characters(blacklist_categories=("Cs",))
)


@st.composite
def valid_prompts(draw: st.DrawFn) -> tuple[str, ParseContext]:
    """A description plus a random set of valid parameters, in random spellings and order."""
    has_image = draw(st.booleans())
    model = draw(st.sampled_from([SD15, SDXL, SMALL]))
    text = draw(st.text(_TEXT_ALPHABET, min_size=1, max_size=60))
    text += draw(st.sampled_from(["", ":: b::2", "::3 b::-1", " {x, y}", " {x, {y, z}}"]))
    options = {
        "ar": st.tuples(st.integers(1, 4), st.integers(1, 4)).map(lambda r: f"{r[0]}:{r[1]}"),
        "seed": st.integers(0, 4294967295).map(str),
        "no": st.lists(
            st.text(st.sampled_from("ab {}\\é"), min_size=1, max_size=6), min_size=1, max_size=3
        ).map(", ".join),
        "chaos": st.integers(0, 100).map(str),
        "stylize": st.integers(0, 1000).map(str),
        "quality": st.sampled_from([".25", "0.5", "1", "2.0"]),
        "steps": st.integers(1, 150).map(str),
        "cfg": st.floats(1, 30).map(repr),
        "sampler": st.sampled_from(SAMPLERS).map(str.upper),
        "scheduler": st.sampled_from(SCHEDULERS),
        "repeat": st.integers(1, 2).map(str),
        "model": st.just(model.name.swapcase()),
        "style": st.sampled_from(["cine", "PLAIN"]),
        "tile": st.just(""),
        "iw": st.floats(0, 3).map(lambda f: f"{f:.3f}"),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True))
    if not has_image and "iw" in chosen:
        chosen.remove("iw")
    if model is not SD15 and "tile" in chosen:
        chosen.remove("tile")
    parts = [text]
    for name in chosen:
        spelling = draw(st.sampled_from([f for f in valid_flags() if _canonical(f) == name]))
        dash = draw(st.sampled_from(["--", "--", "\u2014"]))
        parts.append(f"{dash}{spelling[2:]} {draw(options[name])}".rstrip())
    ctx = make_ctx(has_image=has_image, rng=random.Random(draw(st.integers(0, 2**32))))
    return " ".join(parts), ctx


def _canonical(spelling: str) -> str:
    aliases = {"aspect": "ar", "c": "chaos", "s": "stylize", "q": "quality", "r": "repeat"}
    return aliases.get(spelling[2:], spelling[2:])


@settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much]
)
@given(case=valid_prompts())
def test_format_request_round_trips_generated_requests(case: tuple[str, ParseContext]) -> None:
    raw, ctx = case
    try:
        requests = parse_prompt(raw, ctx)
    except ParamError:
        assume(False)
    for req in requests:
        formatted = format_request(req)
        again = parse_prompt(formatted, ctx)
        assert again == [req], formatted
        assert format_request(again[0]) == formatted


@given(st.integers(0, 2**32 - 1), st.text(max_size=40).filter(lambda t: t.strip() and "--" not in t))
@settings(max_examples=50, deadline=None)
def test_request_survives_a_trip_through_json_storage(seed: int, text: str) -> None:
    from comfy.params import request_from_json, request_to_json

    ctx = ParseContext(models=[ModelProfile(name="m", checkpoint="c.safetensors")], rng=random.Random(0))
    try:
        requests = parse_prompt(f"{text} --ar 3:2 --no a, b --seed {seed}", ctx)
    except ParamError:
        return
    for request in requests:
        again = request_from_json(request_to_json(request))
        assert again == request and again.explicit == request.explicit
