"""SettingsService against a real SQLite store: a member's /imagine defaults, validated before they are saved;
refusals are checked in the words the /settings panel shows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import load_config
from bot.errors import MemberError, Reason
from bot.services import Services
from bot.settings_service import KEEP, NEGATIVE_MAX_CHARS, SettingsService
from cogs._words.refusals import Where, refusal_text
from comfy.params import ParamError
from comfy.profiles import ParamLimits

ALICE = 11

EXTRA = """
[[models]]
name = "Other"
checkpoint = "v1-5-pruned-emaonly.safetensors"

[[styles]]
name = "cinematic"
prefix = "cinematic still,"
"""


@pytest.fixture
async def services(write_config: Callable[..., Path]) -> AsyncIterator[Services]:
    # Port 9 on loopback refuses connections: no backend is needed to keep settings.
    services = Services(load_config(write_config(url="http://127.0.0.1:9", extra=EXTRA), env={}))
    await services.start()
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
def settings(services: Services) -> SettingsService:
    return services.settings


async def test_settings_are_validated_normalised_and_saved(
    services: Services, settings: SettingsService
) -> None:
    saved = await settings.update_settings(
        ALICE, model="other", aspect=" 21 : 09 ", style="CINEMATIC", negative="  blurry,\n  text "
    )

    assert (saved.model, saved.aspect, saved.style, saved.negative) == (
        "Other",
        "21:9",
        "cinematic",
        "blurry, text",
    )
    assert await services.store.get_user_settings(ALICE) == saved


async def test_omitted_settings_stay_and_none_clears_one(settings: SettingsService) -> None:
    await settings.update_settings(ALICE, model="tiny", aspect="2:3")

    after = await settings.update_settings(ALICE, aspect=None, style=KEEP)

    assert (after.model, after.aspect, after.style) == ("tiny", None, None)


async def test_ping_is_on_by_default_and_turning_it_off_keeps_the_other_defaults(
    settings: SettingsService,
) -> None:
    assert (await settings.get_settings(ALICE)).ping is True
    await settings.update_settings(ALICE, model="tiny")

    off = await settings.set_ping(ALICE, False)
    unchanged = await settings.update_settings(ALICE, aspect="2:3")

    assert (off.ping, off.model) == (False, "tiny")
    assert (unchanged.ping, unchanged.aspect) == (False, "2:3")
    assert (await settings.get_settings(ALICE)).ping is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "sdxl"}, "no model called `sdxl`. Models you can use: tiny, Other"),
        ({"style": "anime"}, "no style called `anime`. Styles you can use: cinematic"),
        ({"aspect": "wide"}, "`wide` is not an aspect ratio"),
        ({"aspect": "16:9 --seed 3"}, "is not an aspect ratio"),
        ({"aspect": "{1:1, 2:3}"}, "is not an aspect ratio"),
        ({"aspect": "5:1"}, "may go from 1:4 (tall) to 4:1 (wide)"),
        ({"aspect": "0:1"}, "out of range"),
        ({"aspect": "16000:9000"}, "is not an aspect ratio"),
        ({"negative": "x" * (NEGATIVE_MAX_CHARS + 1)}, f"at most {NEGATIVE_MAX_CHARS} are allowed"),
    ],
)
async def test_settings_that_are_not_allowed_are_refused_and_nothing_is_saved(
    services: Services, settings: SettingsService, change: dict[str, str], message: str
) -> None:
    await settings.update_settings(ALICE, model="tiny")

    with pytest.raises((MemberError, ParamError)) as refused:
        await settings.update_settings(ALICE, **({"style": "cinematic"} | change))

    assert message in refusal_text(refused.value, Where.SETTINGS)
    saved = await settings.get_settings(ALICE)
    assert (saved.model, saved.aspect, saved.style, saved.negative) == ("tiny", None, None, None)


async def test_an_empty_negative_prompt_clears_it(settings: SettingsService) -> None:
    await settings.update_settings(ALICE, negative="text")

    assert (await settings.update_settings(ALICE, negative=" \n ")).negative is None


async def test_clear_settings_forgets_everything(services: Services, settings: SettingsService) -> None:
    await settings.update_settings(ALICE, model="other")

    assert await settings.clear_settings(ALICE) is True
    assert await settings.clear_settings(ALICE) is False
    assert await services.store.get_user_settings(ALICE) is None
    assert (await settings.get_settings(ALICE)).model is None


def test_aspect_choices_stay_within_max_aspect(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(extra=EXTRA), env={})
    narrow = config.model_copy(update={"params": ParamLimits(max_aspect=2.0)})

    assert Services(config).settings.aspect_choices == [
        "1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4", "21:9"
    ]  # fmt: skip
    assert "21:9" not in Services(narrow).settings.aspect_choices
    assert "16:9" in Services(narrow).settings.aspect_choices


async def test_a_server_without_styles_says_so(write_config: Callable[..., Path]) -> None:
    services = Services(load_config(write_config(url="http://127.0.0.1:9"), env={}))
    await services.start()
    try:
        with pytest.raises(MemberError) as refused:
            await services.settings.update_settings(ALICE, style="anime")
    finally:
        await services.close()
    assert refused.value.reason is Reason.NO_STYLES
    assert refusal_text(refused.value, Where.SETTINGS) == "There are no styles on this server."


async def test_remix_is_switched_on_and_off_alone(services: Services, settings: SettingsService) -> None:
    assert (await settings.get_settings(ALICE)).remix is False
    await settings.update_settings(ALICE, model="tiny")
    on = await settings.set_remix(ALICE, True)
    assert (on.remix, on.model) == (True, "tiny")
    assert (await settings.update_settings(ALICE, aspect="2:3")).remix is True
    assert (await settings.set_remix(ALICE, False)).remix is False
    assert await services.store.get_user_settings(ALICE) == await settings.get_settings(ALICE)
