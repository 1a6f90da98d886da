"""/settings through the real discord.py and the fake Discord: selects, the negative prompt modal, Reset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e import E2E, running_bot
from tests.fakes.discord_models import (
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    INTERACTION_MODAL_SUBMIT,
    FakeUser,
    RecordedCall,
    StoredMessage,
)
from tests.fakes.discord_server import InteractionHandle

EPHEMERAL = 64


def fields_of(message: StoredMessage) -> dict[str, str]:
    (embed,) = message.embeds
    return {field["name"]: field["value"] for field in embed["fields"]}


def selected(message: StoredMessage, custom_id: str) -> list[str]:
    component = message.find_component(custom_id)
    assert component is not None
    return [o["value"] for o in component["options"] if o.get("default")]


def button_label(message: StoredMessage, custom_id: str) -> str:
    component = message.find_component(custom_id)
    assert component is not None
    return str(component["label"])


async def submit_modal(
    e2e: E2E, modal: RecordedCall, source: StoredMessage, values: dict[str, str], user: FakeUser
) -> InteractionHandle:
    """Answer the modal the bot opened, as the Discord client would (the fake has no helper for it)."""
    data = modal.payload["data"]

    def answered(component: dict[str, Any]) -> dict[str, Any]:
        if component["type"] == 1:
            return {"type": 1, "components": [answered(c) for c in component["components"]]}
        if component["type"] == 18:
            return {"type": 18, "component": answered(component["component"])}
        return {
            "type": component["type"],
            "custom_id": component["custom_id"],
            "value": values[component["custom_id"]],
        }

    submitted = {"custom_id": data["custom_id"], "components": [answered(c) for c in data["components"]]}
    return await e2e.discord._interact(INTERACTION_MODAL_SUBMIT, submitted, user=user, message=source)


async def open_panel(e2e: E2E, user: FakeUser) -> tuple[RecordedCall, StoredMessage]:
    handle = await e2e.discord.slash_command("settings", user=user)
    call = await handle.response()
    panel = handle.original()
    assert panel is not None
    return call, panel


async def test_settings_panel_shows_defaults_and_components_bound_to_the_member(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        call, panel = await open_panel(e2e, e2e.discord.user)
        uid = e2e.discord.user.id

    assert call.callback_type == CALLBACK_CHANNEL_MESSAGE and call.payload["data"]["flags"] & EPHEMERAL
    assert panel.custom_ids() == [
        f"settings:{uid}:model",
        f"settings:{uid}:aspect",
        f"settings:{uid}:style",
        f"settings:{uid}:negative",
        f"settings:{uid}:ping",
        f"settings:{uid}:remix",
        f"settings:{uid}:reset",
    ]
    assert fields_of(panel) == {
        "Model": "tiny (server default)",
        "Aspect ratio": "the model's own",
        "Style": "none",
        "Negative prompt": "none",
        "Ping me when an image is ready": "yes: your finished images mention you",
        "Remix": "off: follow-up buttons start at once (U never asks)",
    }
    aspect = panel.find_component(f"settings:{uid}:aspect")
    assert aspect is not None
    assert [o["value"] for o in aspect["options"]] == [
        "__default__", "1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4", "21:9"
    ]  # fmt: skip
    assert selected(panel, f"settings:{uid}:model") == ["__default__"]


async def test_select_changes_are_stored_and_reset_clears_them(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, store = e2e.discord, e2e.services.store
        uid = fake.user.id
        _, panel = await open_panel(e2e, fake.user)

        model = await (
            await fake.select(panel, f"settings:{uid}:model", ["other"], user=fake.user)
        ).response()
        await (await fake.select(panel, f"settings:{uid}:aspect", ["21:9"], user=fake.user)).response()
        await (await fake.select(panel, f"settings:{uid}:style", ["cinematic"], user=fake.user)).response()
        saved = await store.get_user_settings(uid)
        shown = fields_of(fake.message(panel.id))
        model_selected = selected(fake.message(panel.id), f"settings:{uid}:model")
        aspect_selected = selected(fake.message(panel.id), f"settings:{uid}:aspect")

        back = await (
            await fake.select(panel, f"settings:{uid}:aspect", ["__default__"], user=fake.user)
        ).response()
        after_default = await store.get_user_settings(uid)

        reset = await (await fake.click(panel, f"settings:{uid}:reset", user=fake.user)).response()
        cleared = await store.get_user_settings(uid)
        after_reset = fields_of(fake.message(panel.id))

    assert model.callback_type == CALLBACK_UPDATE_MESSAGE
    assert saved is not None and (saved.model, saved.aspect, saved.style) == ("other", "21:9", "cinematic")
    assert (shown["Model"], shown["Aspect ratio"], shown["Style"]) == ("other", "21:9", "cinematic")
    assert (model_selected, aspect_selected) == (["other"], ["21:9"])
    assert back.callback_type == CALLBACK_UPDATE_MESSAGE
    assert after_default is not None and (after_default.model, after_default.aspect) == ("other", None)
    assert reset.callback_type == CALLBACK_UPDATE_MESSAGE
    assert cleared is None
    assert after_reset["Model"] == "tiny (server default)" and after_reset["Style"] == "none"
    assert fake.message(panel.id).embeds[0]["description"] == "Your defaults are reset."


async def test_negative_prompt_is_set_through_a_modal_and_cleared_when_empty(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, store = e2e.discord, e2e.services.store
        uid = fake.user.id
        _, panel = await open_panel(e2e, fake.user)

        opened = await (await fake.click(panel, f"settings:{uid}:negative", user=fake.user)).response()
        submitted = await (
            await submit_modal(e2e, opened, panel, {"negative": "  blurry,\n text  "}, fake.user)
        ).response()
        saved = await store.get_user_settings(uid)
        shown = fields_of(fake.message(panel.id))["Negative prompt"]

        reopened = await (await fake.click(panel, f"settings:{uid}:negative", user=fake.user)).response()
        await (await submit_modal(e2e, reopened, panel, {"negative": ""}, fake.user)).response()
        emptied = await store.get_user_settings(uid)

    assert opened.callback_type == CALLBACK_MODAL
    modal = opened.payload["data"]
    assert modal["custom_id"] == f"settings-negative:{uid}" and modal["title"] == "Negative prompt"
    assert submitted.callback_type == CALLBACK_UPDATE_MESSAGE
    assert saved is not None and saved.negative == "blurry, text"
    assert shown == "blurry, text"
    # The modal opens with the current value filled in.
    assert "blurry, text" in str(reopened.payload["data"]["components"])
    assert emptied is not None and emptied.negative is None


async def test_the_ping_toggle_turns_the_mention_off_and_on_again(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, store = e2e.discord, e2e.services.store
        uid = fake.user.id
        _, panel = await open_panel(e2e, fake.user)

        off = await (await fake.click(panel, f"settings:{uid}:ping", user=fake.user)).response()
        saved_off = await store.get_user_settings(uid)
        shown_off = fields_of(fake.message(panel.id))["Ping me when an image is ready"]
        note_off = fake.message(panel.id).embeds[0]["description"]
        label_off = button_label(fake.message(panel.id), f"settings:{uid}:ping")
        await (await fake.click(panel, f"settings:{uid}:ping", user=fake.user)).response()
        saved_on = await store.get_user_settings(uid)
        label_on = button_label(fake.message(panel.id), f"settings:{uid}:ping")

    assert off.callback_type == CALLBACK_UPDATE_MESSAGE
    assert saved_off is not None and saved_off.ping is False
    assert shown_off == "no: your finished images name you silently"
    assert note_off == "Your finished images will no longer ping you."
    assert (label_off, label_on) == ("Ping: off", "Ping: on")
    assert saved_on is not None and saved_on.ping is True


async def test_the_ping_option_of_the_command_saves_it_and_shows_the_panel(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        handle = await fake.slash_command("settings", {"ping": False}, user=fake.user)
        call = await handle.response()
        saved = await e2e.services.store.get_user_settings(fake.user.id)
        panel = handle.original()

    assert call.callback_type == CALLBACK_CHANNEL_MESSAGE and call.payload["data"]["flags"] & EPHEMERAL
    assert saved is not None and saved.ping is False and saved.model is None
    assert panel is not None and fields_of(panel)["Ping me when an image is ready"].startswith("no:")
    assert panel.embeds[0]["description"] == "Your finished images will no longer ping you."


async def test_someone_else_cannot_use_a_members_panel(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, store = e2e.discord, e2e.services.store
        uid = fake.user.id
        _, panel = await open_panel(e2e, fake.user)

        select = await (
            await fake.select(panel, f"settings:{uid}:model", ["other"], user=fake.admin)
        ).response()
        reset = await (await fake.click(panel, f"settings:{uid}:reset", user=fake.admin)).response()
        mine, theirs = await store.get_user_settings(uid), await store.get_user_settings(fake.admin.id)

    for call in (select, reset):
        assert call.callback_type == CALLBACK_CHANNEL_MESSAGE and call.payload["data"]["flags"] & EPHEMERAL
        assert "belongs to someone else" in call.payload["data"]["content"]
    assert mine is None and theirs is None
    assert fake.message(panel.id).edit_count == 0


async def test_a_panel_keeps_working_after_a_restart(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        uid = fake.user.id
        _, panel = await open_panel(e2e, fake.user)
        await e2e.restart()

        call = await (
            await fake.select(panel, f"settings:{uid}:style", ["cinematic"], user=fake.user)
        ).response()
        saved = await e2e.services.store.get_user_settings(uid)

    assert call.callback_type == CALLBACK_UPDATE_MESSAGE
    assert saved is not None and saved.style == "cinematic"
