"""A member's saved settings on every engine: changed one at a time, cleared."""

from __future__ import annotations

from bot.store import Store
from tests.store.helpers import FakeClock


async def test_user_settings_can_be_changed_one_at_a_time_and_cleared(store: Store, clock: FakeClock) -> None:
    assert await store.get_user_settings(42) is None
    first = await store.update_user_settings(42, model="sdxl", aspect="16:9")
    second = await store.update_user_settings(42, aspect=None, negative="text, watermark")
    assert (second.model, second.aspect, second.style, second.negative) == (
        "sdxl",
        None,
        None,
        "text, watermark",
    )
    assert second.updated_at > first.updated_at
    assert await store.get_user_settings(42) == second
    assert await store.clear_user_settings(42) is True
    assert await store.clear_user_settings(42) is False
    assert await store.get_user_settings(42) is None


async def test_remix_is_off_until_turned_on_and_changes_alone(store: Store) -> None:
    assert (await store.update_user_settings(7, model="sdxl")).remix is False
    on = await store.update_user_settings(7, remix=True)
    assert (on.remix, on.model) == (True, "sdxl")
    assert (await store.update_user_settings(7, negative="text")).remix is True
    assert (await store.update_user_settings(7, remix=False)).remix is False
    assert (await store.update_user_settings(8, remix=True)).model is None  # a first save may be Remix alone
