"""Remix mode and Custom Zoom through the real discord.py: follow-up buttons that first ask for the prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobKind, JobStatus
from comfy.params import format_request, request_from_json
from tests.e2e import E2E, ephemeral_text, running_bot, wait_for_result
from tests.fakes.discord_models import CALLBACK_DEFERRED_CHANNEL_MESSAGE, CALLBACK_MODAL, StoredMessage
from tests.fakes.discord_server import SEND_ROUTE, InteractionHandle
from tests.test_e2e_buttons import answer, imagine, job_of, press

# The buttons Remix covers: (where the button is, its action, the image number on a grid).
REMIXED = [
    ("grid", "vary_strong", 1),
    ("grid", "reroll", None),
    ("upscale", "vary_strong", None),
    ("upscale", "vary_subtle", None),
    ("upscale", "zoom_1.5", None),
    ("upscale", "zoom_2", None),
    ("upscale", "pan_left", None),
    ("upscale", "pan_right", None),
    ("upscale", "pan_up", None),
    ("upscale", "pan_down", None),
]
MANY_COMMANDS = "[limits]\nper_user_per_minute = 60\n"  # these tests press more buttons than 10 a minute
KINDS = {"vary": JobKind.VARIATION, "reroll": JobKind.REROLL, "zoom": JobKind.ZOOM, "pan": JobKind.PAN}


async def remix_on(e2e: E2E, on: bool = True) -> str:
    """Switch Remix with `/settings remix:...`; return what the panel says."""
    handle = await e2e.discord.slash_command("settings", {"remix": on})
    call = await handle.response()
    return str(call.payload["data"]["embeds"][0]["description"])


async def grid_and_upscale(e2e: E2E, prompt: str = "a red fox --ar 3:2 --seed 11") -> dict[str, Any]:
    """A finished grid and the upscale of its first image: {"grid": (job, message), "upscale": (...)}."""
    parent, grid = await imagine(e2e, prompt)
    _, upscaled, _ = await press(e2e, grid, f"ci:upscale_2x:{parent.id}:1")
    assert upscaled is not None
    return {"grid": (parent, grid), "upscale": (await job_of(e2e, upscaled), upscaled)}


def button_id(action: str, job_id: int, number: int | None) -> str:
    return f"ci:{action}:{job_id}" + (f":{number}" if number else "")


def prefilled(handle: InteractionHandle) -> str:
    """The text the modal the bot opened offers to edit."""
    modal = handle.modal()
    assert modal is not None
    (label,) = modal["components"]
    assert label["type"] == 18 and label["component"]["custom_id"] == "prompt"
    return str(label["component"]["value"])


async def submit(
    e2e: E2E, opened: InteractionHandle, text: str | None = None
) -> tuple[str, StoredMessage | None, InteractionHandle]:
    """Submit the modal (with `text`, else as prefilled); what the member was told, and the new job's message."""
    fake = e2e.discord
    since = fake.mark()
    handle = await fake.submit_modal(opened, {"prompt": text} if text is not None else {})
    told = await answer(e2e, handle)
    posts = fake.calls_to(SEND_ROUTE, since=since)
    if not posts:
        return told, None, handle
    return told, await wait_for_result(e2e, int(posts[0].response["id"])), handle


async def queued_jobs(e2e: E2E) -> list[Any]:
    store = e2e.services.store
    return await store.list_guild_jobs(e2e.discord.guild.id, statuses=[JobStatus.QUEUED, JobStatus.RUNNING])


# ------------------------------------------------------------------------------------------ remix


async def test_with_remix_off_every_follow_up_starts_at_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path, config_extra=MANY_COMMANDS) as e2e:
        parents = await grid_and_upscale(e2e)
        calls = []
        for where, action, number in REMIXED:
            job, message = parents[where]
            _, started, _ = await press(e2e, message, button_id(action, job.id, number))
            assert started is not None, action
            calls.append((action, (await job_of(e2e, started)).kind))

    assert [kind for _, kind in calls] == [KINDS[action.split("_")[0]] for _, action, _ in REMIXED]


@pytest.mark.parametrize(("where", "action", "number"), REMIXED, ids=lambda v: str(v))
async def test_with_remix_on_the_button_asks_for_the_prompt_and_runs_it_from_the_parent(
    tmp_path: Path, where: str, action: str, number: int | None
) -> None:
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        note = await remix_on(e2e)
        parents = await grid_and_upscale(e2e)
        parent, message = parents[where]
        before = fake.mark()
        opened = await fake.click(message, button_id(action, parent.id, number))
        call = await opened.response()
        nothing_queued = await queued_jobs(e2e)
        text = prefilled(opened)
        told, started, _ = await submit(e2e, opened, text.replace("a red fox", "a grey wolf"))
        assert started is not None
        job = await job_of(e2e, started)
        posted = fake.calls_to(SEND_ROUTE, since=before)

    assert note.startswith("Remix is on")
    modal = opened.modal()
    assert call.callback_type == CALLBACK_MODAL and modal is not None
    assert modal["custom_id"] == "ci:prompt:" + button_id(action, parent.id, number)[3:]
    assert modal["title"].startswith("Remix: ")
    assert nothing_queued == []  # nothing starts before the prompt is submitted
    assert text == format_request(request_from_json(parent.request_json))
    request = request_from_json(job.request_json)
    assert (job.prompt, request.text, request.aspect) == ("a grey wolf", "a grey wolf", (3, 2))
    assert request.seed != request_from_json(parent.request_json).seed  # the action's own seed rule
    assert job.kind is KINDS[action.split("_")[0]] and job.user_id == fake.user.id
    if action == "reroll":
        assert (job.parent_job_id, job.action) == (parent.parent_job_id, parent.action)
    else:
        assert (job.action, job.parent_job_id, job.parent_index) == (action, parent.id, (number or 1) - 1)
    assert told.startswith("Queued: ")
    assert int(posted[0].payload["message_reference"]["message_id"]) == message.id  # in reply, as a button
    assert job.status is JobStatus.COMPLETED


async def test_u_buttons_never_ask_for_the_prompt_even_with_remix_on(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        await remix_on(e2e)
        parents = await grid_and_upscale(e2e)
        parent, grid = parents["grid"]
        upscale, upscaled = parents["upscale"]
        clicks = [
            await e2e.discord.click(grid, f"ci:upscale_2x:{parent.id}:2"),
            await e2e.discord.click(upscaled, f"ci:upscale_2x:{upscale.id}"),
        ]
        calls = [await click.response() for click in clicks]
        told = [await answer(e2e, click) for click in clicks]

    assert [c.callback_type for c in calls] == [CALLBACK_DEFERRED_CHANNEL_MESSAGE] * 2
    assert all(text.startswith("Queued: Upscale (2x)") for text in told)


async def test_with_remix_on_v1s_edited_prompt_is_what_comfyui_receives(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        comfy = e2e.comfy[0]
        await remix_on(e2e)
        parent, grid = await imagine(e2e, "a red fox --seed 11")
        opened = await e2e.discord.click(grid, f"ci:vary_strong:{parent.id}:1")
        await opened.response()
        _, varied, _ = await submit(e2e, opened, "a snowy owl in the night --no trees --seed 5")
        assert varied is not None
        graph = comfy.received_prompts[-1]

    texts = {
        n["_meta"]["title"]: n["inputs"]["text"]
        for n in graph.values()
        if n["class_type"] == "CLIPTextEncode"
    }
    assert texts["Positive"] == "a snowy owl in the night"
    assert "trees" in texts["Negative"]
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    assert sampler["seed"] == 5  # a seed the member changed is kept
    (load,) = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    assert load.startswith(f"imagine_{parent.id}_0")  # V1 starts from the parent's first image


async def test_a_remix_prompt_with_a_bad_parameter_is_refused_as_in_imagine_quoting_the_text(
    tmp_path: Path,
) -> None:
    typed = "a grey wolf at dawn, every word of it typed by hand --ar wide --seed 3"
    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        imagined = await fake.slash_command("imagine", {"prompt": typed})
        in_imagine = ephemeral_text(await imagined.response())
        await remix_on(e2e)
        parent, grid = await imagine(e2e)
        opened = await fake.click(grid, f"ci:vary_strong:{parent.id}:2")
        await opened.response()
        told, started, handle = await submit(e2e, opened, typed)
        (message,) = handle.messages()
        zoom_opened = await fake.click(grid, f"ci:reroll:{parent.id}")
        await zoom_opened.response()
        zoom_told, _, _ = await submit(e2e, zoom_opened, "a fox --zoom 2")
        waiting = await queued_jobs(e2e)

    assert started is None and waiting == []
    assert told == in_imagine == "`--ar` must be two whole numbers like `16:9` or `2:3`; you gave `wide`."
    assert message.ephemeral and message.embeds[0]["description"] == f"```\n{typed}\n```"
    assert zoom_told == "`--zoom` only works in Custom Zoom, under an upscaled image."


async def test_a_remix_modal_submitted_after_a_restart_still_works(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        await remix_on(e2e)
        parent, grid = await imagine(e2e)
        opened = await e2e.discord.click(grid, f"ci:reroll:{parent.id}")
        await opened.response()
        await e2e.restart()
        told, rerolled, _ = await submit(e2e, opened, "a fox after the restart")
        assert rerolled is not None
        job = await job_of(e2e, rerolled)

    assert told.startswith(f"Queued: Reroll (job #{job.id}")
    assert (job.kind, job.prompt, job.status) == (
        JobKind.REROLL,
        "a fox after the restart",
        JobStatus.COMPLETED,
    )


async def test_a_remix_submitted_in_the_same_process_makes_exactly_one_job(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        await remix_on(e2e)
        parent, grid = await imagine(e2e)
        opened = await e2e.discord.click(grid, f"ci:vary_strong:{parent.id}:3")
        await opened.response()
        _, varied, handle = await submit(e2e, opened)
        assert varied is not None
        jobs = await e2e.services.store.list_guild_jobs(e2e.discord.guild.id)

    assert len(handle.messages()) == 1  # one answer: discord.py did not handle the modal a second time
    assert [j.kind for j in jobs] == [JobKind.VARIATION, JobKind.IMAGINE]


async def test_remix_off_again_starts_at_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        await remix_on(e2e)
        note = await remix_on(e2e, False)
        parent, grid = await imagine(e2e)
        call = await (await e2e.discord.click(grid, f"ci:vary_strong:{parent.id}:1")).response()

    assert note.startswith("Remix is off")
    assert call.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE


# ------------------------------------------------------------------------------------------ custom zoom


async def test_custom_zoom_takes_1_to_2_and_zooms_out_by_the_given_factor(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        fake, comfy = e2e.discord, e2e.comfy[0]
        parents = await grid_and_upscale(e2e, "a red fox --seed 11")
        upscale, upscaled = parents["upscale"]
        told = []
        for value in ("0.9", "2.1"):
            opened = await fake.click(upscaled, f"ci:zoom_custom:{upscale.id}")
            await opened.response()
            text = prefilled(opened)
            told.append((await submit(e2e, opened, text.replace("--zoom 2", f"--zoom {value}")))[0])
        waiting = await queued_jobs(e2e)
        opened = await fake.click(upscaled, f"ci:zoom_custom:{upscale.id}")
        await opened.response()
        _, zoomed, _ = await submit(e2e, opened, prefilled(opened).replace("--zoom 2", "--zoom 1.5"))
        assert zoomed is not None
        job = await job_of(e2e, zoomed)
        graph = comfy.received_prompts[-1]
        outputs = await e2e.services.store.outputs(job.id)

    modal = opened.modal()
    assert modal is not None and (modal["custom_id"], modal["title"]) == (
        f"ci:prompt:zoom_custom:{upscale.id}",
        "Custom Zoom",
    )
    seed = request_from_json(upscale.request_json).seed
    assert text == f"a red fox --seed {seed} --zoom 2"  # Remix is off: Custom Zoom asks anyway
    assert told == [
        f"`--zoom` must be a number from 1 to 2 (like `1` or `1.5`); you gave `{v}`." for v in ("0.9", "2.1")
    ]
    assert waiting == []
    pad = next(n for n in graph.values() if n["_meta"]["title"] == "Outpaint Pad")["inputs"]
    assert (pad["left"], pad["right"], pad["top"], pad["bottom"]) == (32, 32, 32, 32)  # 128 x (1.5 - 1) / 2
    assert (job.kind, job.action, request_from_json(job.request_json).zoom) == (
        JobKind.ZOOM,
        "zoom_custom",
        1.5,
    )
    assert "--zoom 1.5** - " in zoomed.content  # the headline shows the zoom it was made with
    assert {(o.width, o.height) for o in outputs} == {(128, 128)}


async def test_zoom_in_imagine_is_refused_with_where_it_works(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        handle = await e2e.discord.slash_command("imagine", {"prompt": "a fox --zoom 2"})
        told = ephemeral_text(await handle.response())
        jobs = await e2e.services.store.list_guild_jobs(e2e.discord.guild.id)

    assert told == "`--zoom` only works in Custom Zoom, under an upscaled image."
    assert jobs == []


async def test_the_settings_panel_switches_remix_and_shows_it(tmp_path: Path) -> None:
    def shown(message: StoredMessage) -> tuple[str, str, str]:
        """The panel's Remix field, its note and the Remix button's label, as they are now."""
        embed = message.embeds[0]
        field = next(f["value"] for f in embed["fields"] if f["name"] == "Remix")
        button = message.find_component(f"settings:{message_user}:remix")
        assert button is not None
        return field, embed.get("description") or "", button["label"]

    async with running_bot(tmp_path) as e2e:
        fake = e2e.discord
        message_user = fake.user.id
        handle = await fake.slash_command("settings")
        await handle.response()
        panel = handle.original()
        assert panel is not None
        await (await fake.click(panel, f"settings:{message_user}:remix")).response()
        on = shown(fake.message(panel.id))
        saved = await e2e.services.store.get_user_settings(message_user)
        await (await fake.click(panel, f"settings:{message_user}:remix")).response()
        off = shown(fake.message(panel.id))

    assert saved is not None and saved.remix is True
    assert on[0].startswith("on:") and on[1].startswith("Remix is on") and on[2] == "Remix: on"
    assert off[0].startswith("off:") and off[1].startswith("Remix is off") and off[2] == "Remix: off"
