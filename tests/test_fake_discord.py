"""An unmodified discord.py bot against the fake Discord: login, slash commands, uploads, buttons, faults."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakes.discord_models import (
    CALLBACK_AUTOCOMPLETE_RESULT,
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_CHANNEL_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    FILESIZE_LIMIT_BY_TIER,
    INTERACTION_MODAL_SUBMIT,
    FakeChannel,
    allowed_mentions_errors,
    commands_errors,
    components_errors,
    shard_of,
)
from tests.fakes.discord_server import (
    ADD_REACTION_ROUTE,
    CALLBACK_ROUTE,
    CREATE_DM_ROUTE,
    DELETE_ROUTE,
    EDIT_ROUTE,
    FOLLOWUP_ROUTE,
    REMOVE_OWN_REACTION_ROUTE,
    SEND_ROUTE,
    FakeDiscord,
    InteractionNotDelivered,
)

ROOT = Path(__file__).resolve().parents[1]
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def png_bytes(width: int, height: int) -> bytes:
    """A real PNG of this size (Discord reports an image attachment's width and height)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class CounterButton(discord.ui.DynamicItem[discord.ui.Button], template=r"counter:(?P<count>\d+)"):
    """A persistent button whose custom_id carries its state, so it works after a restart."""

    def __init__(self, count: int) -> None:
        button = discord.ui.Button(
            label=f"Clicked {count} times", style=discord.ButtonStyle.primary, custom_id=f"counter:{count}"
        )
        super().__init__(button)
        self.count = count

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> CounterButton:
        return cls(int(match["count"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(CounterButton(self.count + 1))
        await interaction.response.edit_message(view=view)


class ZlibDecompressionContext:
    """discord.py's zlib-stream reader, which it only defines when zstandard is missing."""

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
            return None
        message = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return message.decode()


class RemixModal(discord.ui.Modal, title="Remix"):
    """A modal prefilled with the parent prompt: one text input in an action row, one inside a Label."""

    def __init__(self, prompt: str) -> None:
        super().__init__(custom_id="remix:modal")
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="Prompt", custom_id="prompt", default=prompt, max_length=100
        )
        self.zoom: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            custom_id="zoom", required=False, max_length=3
        )
        self.add_item(discord.ui.TextDisplay("Change the prompt, or zoom out"))
        self.add_item(self.prompt)
        self.add_item(discord.ui.Label(text="Zoom (1.0-2.0)", component=self.zoom))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(
            content=f"{self.prompt.value} --zoom {self.zoom.value or '-'}"
        )


class Recorder:
    """Collects the raw gateway events a bot's listeners receive."""

    def __init__(self, bot: commands.Bot | commands.AutoShardedBot, *events: str) -> None:
        self.seen: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        for event in events:
            bot.add_listener(self._keep(event), f"on_{event}")

    def _keep(self, event: str) -> Callable[[object], Awaitable[None]]:
        async def keep(payload: object) -> None:
            self.seen.put_nowait((event, payload))

        return keep

    async def next(self) -> tuple[str, object]:
        return await asyncio.wait_for(self.seen.get(), timeout=5)


def make_bot(
    held: asyncio.Queue[discord.Interaction] | None = None, intents: discord.Intents | None = None
) -> commands.Bot:
    """A plain commands.Bot with the commands the tests drive."""
    bot = commands.Bot(command_prefix="!", intents=intents or discord.Intents.default())
    bot.add_dynamic_items(CounterButton)
    inbox: asyncio.Queue[discord.Interaction] = held if held is not None else asyncio.Queue()

    @bot.tree.command(name="hello", description="Say hello")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Hello, {interaction.user.display_name}!")

    @bot.tree.command(name="render", description="Think, then post an image")
    @app_commands.describe(size="bytes of image data")
    async def render(interaction: discord.Interaction, size: app_commands.Range[int, 1, 4096] = 64) -> None:
        await interaction.response.defer(thinking=True)
        image = discord.File(io.BytesIO(PNG_BYTES[:size]), filename="grid.png")
        await interaction.followup.send("Here is your grid", file=image)

    @bot.tree.command(name="panel", description="Post a counter button")
    async def panel(interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(CounterButton(0))
        await interaction.response.send_message("Counter", view=view)

    @bot.tree.command(name="style", description="Choose a style from a menu")
    async def style(interaction: discord.Interaction) -> None:
        menu: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id="style", options=[discord.SelectOption(label=s) for s in ("photo", "anime", "oil")]
        )

        async def chosen(choice: discord.Interaction) -> None:
            await choice.response.edit_message(content=f"Style: {menu.values[0]}", view=None)

        menu.callback = chosen
        view = discord.ui.View()
        view.add_item(menu)
        await interaction.response.send_message("Pick a style", view=view)

    @bot.tree.command(name="whoami", description="Am I an admin?")
    async def whoami(interaction: discord.Interaction) -> None:
        role = "admin" if interaction.permissions.manage_guild else "member"
        await interaction.response.send_message(f"{role}, limit {interaction.filesize_limit}", ephemeral=True)

    @bot.tree.command(name="hold", description="Hand the interaction to the test without answering")
    async def hold(interaction: discord.Interaction) -> None:
        inbox.put_nowait(interaction)

    @bot.tree.command(name="measure", description="Download an attached image")
    async def measure(interaction: discord.Interaction, image: discord.Attachment) -> None:
        data = await image.read()
        await interaction.response.send_message(f"{image.filename}: {len(data)} bytes, {image.content_type}")

    @bot.tree.command(name="mix", description="Download two to three attached images")
    async def mix(
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
    ) -> None:
        given = [a for a in (image1, image2, image3) if a is not None]
        sizes = [f"{a.filename} {len(await a.read())} {a.content_type} {a.width}x{a.height}" for a in given]
        await interaction.response.send_message("; ".join(sizes))

    @bot.tree.command(name="remix", description="Post a message with a Remix button")
    async def remix(interaction: discord.Interaction) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(label="Remix", custom_id="remix:1")

        async def open_modal(click: discord.Interaction) -> None:
            await click.response.send_modal(RemixModal("a lighthouse at dusk"))

        button.callback = open_modal
        view = discord.ui.View(timeout=None)
        view.add_item(button)
        await interaction.response.send_message("a lighthouse at dusk", view=view)

    @bot.tree.command(name="pick", description="Pick a sampler")
    async def pick(interaction: discord.Interaction, sampler: str) -> None:
        await interaction.response.send_message(sampler)

    @pick.autocomplete("sampler")
    async def pick_sampler(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["euler", "euler_ancestral", "dpmpp_2m", "ddim"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    return bot


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot) -> AsyncIterator[commands.Bot]:
    """Log the bot in, wait until the fake sent READY and every GUILD_CREATE, close it cleanly after."""
    task = asyncio.create_task(bot.start(fake.token))
    ready = asyncio.create_task(fake.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise AssertionError("the bot stopped before it was ready")
        await ready
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.mark.parametrize("transport", ["zstd-stream", "zlib-stream"])
async def test_slash_command_reply_is_recorded_over_either_transport(
    fake: FakeDiscord, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "zlib-stream":
        monkeypatch.setattr(discord.utils, "_ActiveDecompressionContext", ZlibDecompressionContext)
    async with running(fake, make_bot()):
        handle = await fake.slash_command("hello", user=fake.user)
        call = await handle.response()

    assert fake.gateway.connections[0].compress == transport
    assert call.callback_type == CALLBACK_CHANNEL_MESSAGE
    assert call.payload["data"]["content"] == "Hello, Alice!"
    assert call.query == {"with_response": "1"}
    assert handle.original() is not None and handle.original().content == "Hello, Alice!"
    assert [c.path for c in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert fake.calls[0].headers["Authorization"] == f"Bot {fake.token}"
    assert fake.unexpected_calls == []


async def test_deferred_followup_uploads_file_and_replaces_thinking_message(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        handle = await fake.slash_command("render", {"size": 300})
        defer = await handle.response()
        (message,) = await handle.wait_for_messages(1)

    assert defer.callback_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
    assert defer.response["interaction"]["response_message_loading"] is True
    upload = fake.calls_to(FOLLOWUP_ROUTE)[0]
    assert upload.payload["content"] == "Here is your grid"
    assert upload.payload["attachments"] == [{"id": 0, "filename": "grid.png"}]
    assert [(f.field, f.filename, f.data) for f in upload.files] == [
        ("files[0]", "grid.png", PNG_BYTES[:300])
    ]
    assert message.id == handle.original().id and not message.loading
    assert [(a.filename, a.size) for a in message.attachments] == [("grid.png", 300)]


async def test_button_survives_restart_through_dynamic_item(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        await (await fake.slash_command("panel")).response()
    panel = fake.latest_message()
    assert panel is not None and panel.custom_ids() == ["counter:0"]

    async with running(fake, make_bot()):
        click = await fake.click(panel, "counter:0", user=fake.admin)
        call = await click.response()

    assert call.callback_type == CALLBACK_UPDATE_MESSAGE
    assert fake.message(panel.id).custom_ids() == ["counter:1"]
    assert fake.message(panel.id).edit_count == 1
    assert [f.op for f in fake.gateway_frames].count(2) == 2  # two bots, two IDENTIFYs


async def test_clicking_a_missing_button_is_a_test_error(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        await (await fake.slash_command("panel")).response()
        panel = fake.latest_message()
        assert panel is not None
        with pytest.raises(ValueError, match=r"no component 'counter:9'.*counter:0"):
            await fake.click(panel, "counter:9")


async def test_rate_limit_with_via_header_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        fake.fail_next(SEND_ROUTE, 429, retry_after=0.05)
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("progress 10%")

    limited, accepted = fake.calls_to(SEND_ROUTE)
    assert limited.status == 429 and accepted.status == 200
    assert limited.response["retry_after"] == 0.05
    assert limited.response_headers["Via"] and limited.response_headers["X-RateLimit-Remaining"] == "0"
    assert fake.message(sent.id).content == "progress 10%"


async def test_rate_limit_without_via_header_raises(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        fake.fail_next(SEND_ROUTE, 429, via=False)
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as raised:
            await channel.send("progress 10%")

    assert raised.value.status == 429
    assert len(fake.calls_to(SEND_ROUTE)) == 1


async def test_interaction_callback_429_is_retried(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        fake.fail_next(CALLBACK_ROUTE, 429, retry_after=0.02)
        call = await (await fake.slash_command("hello")).response()

    assert [c.status for c in fake.calls_to(CALLBACK_ROUTE)] == [429, 200]
    assert call.status == 200


@pytest.mark.parametrize("send_headers", [False, True])
async def test_channel_edit_rate_limit(fake: FakeDiscord, send_headers: bool) -> None:
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("step 0")
        fake.limit_channel_edits(limit=2, per=0.2, send_headers=send_headers)
        for step in range(1, 4):
            message = await message.edit(content=f"step {step}")

    statuses = [c.status for c in fake.calls_to(EDIT_ROUTE)]
    if send_headers:  # discord.py read X-RateLimit-Remaining: 0 and waited by itself
        assert statuses == [200, 200, 200]
    else:
        assert statuses == [200, 200, 429, 200]
        limited = fake.calls_to(EDIT_ROUTE)[2]
        assert 0 < limited.response["retry_after"] <= 0.2
        assert limited.response_headers["Via"]
    assert fake.message(message.id).content == "step 3"


async def test_expired_token_makes_followup_raise_invalid_webhook_token(fake: FakeDiscord) -> None:
    held: asyncio.Queue[discord.Interaction] = asyncio.Queue()
    async with running(fake, make_bot(held)):
        handle = await fake.slash_command("hold")
        interaction = await asyncio.wait_for(held.get(), timeout=5)
        await interaction.response.defer()
        handle.expire()
        with pytest.raises(discord.HTTPException) as raised:
            await interaction.followup.send("too late")

    assert (raised.value.status, raised.value.code) == (401, 50027)


async def test_token_dies_fifteen_minutes_after_the_interaction(fake: FakeDiscord) -> None:
    held: asyncio.Queue[discord.Interaction] = asyncio.Queue()
    async with running(fake, make_bot(held)):
        await fake.slash_command("hold")
        interaction = await asyncio.wait_for(held.get(), timeout=5)
        await interaction.response.send_message("Queued, position 1")
        await interaction.edit_original_response(content="Queued, position 0")
        assert (await interaction.original_response()).content == "Queued, position 0"
        fake.advance_time(15 * 60 + 1)
        with pytest.raises(discord.HTTPException) as raised:
            await interaction.edit_original_response(content="Running")

    assert raised.value.code == 50027


async def test_late_first_response_is_unknown_interaction(fake: FakeDiscord) -> None:
    held: asyncio.Queue[discord.Interaction] = asyncio.Queue()
    async with running(fake, make_bot(held)):
        await fake.slash_command("hold")
        interaction = await asyncio.wait_for(held.get(), timeout=5)
        fake.advance_time(3.5)
        with pytest.raises(discord.NotFound) as raised:
            await interaction.response.send_message("Queued")

    assert raised.value.code == 10062


async def test_upload_over_the_limit_is_rejected_with_413(fake: FakeDiscord) -> None:
    fake.upload_limit = 200
    async with running(fake, make_bot()):
        held_limit = await (await fake.slash_command("whoami")).response()
        handle = await fake.slash_command("render", {"size": 300})
        await handle.response()
        failed = await fake.wait_for_call(FOLLOWUP_ROUTE)

    assert held_limit.payload["data"]["content"] == "member, limit 200"
    assert (failed.status, failed.response["code"]) == (413, 40005)
    assert handle.original() is not None and handle.original().loading


async def test_boost_tier_sets_filesize_limit_and_admin_role_grants_manage_guild() -> None:
    async with FakeDiscord(premium_tier=2) as fake, running(fake, make_bot()) as bot:
        admin = await (await fake.slash_command("whoami", user=fake.admin)).response()
        member = await (await fake.slash_command("whoami", user=fake.user)).response()
        guild = bot.get_guild(fake.guild.id)

    limit = FILESIZE_LIMIT_BY_TIER[2]
    assert admin.payload["data"]["content"] == f"admin, limit {limit}"
    assert member.payload["data"]["content"] == f"member, limit {limit}"
    assert admin.payload["data"]["flags"] == 64
    assert guild is not None and guild.filesize_limit == limit


async def test_deleted_message_cannot_be_edited(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("Queued")
        await message.delete()
        with pytest.raises(discord.NotFound) as raised:
            await message.edit(content="Running")

    assert raised.value.code == 10008
    assert fake.message(message.id).deleted


async def test_invalid_message_is_rejected_with_form_errors(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as raised:
            await channel.send("x" * 2001)

    assert (raised.value.status, raised.value.code) == (400, 50035)
    assert "content" in raised.value.text and "2000 or fewer" in raised.value.text


async def test_unexpected_route_is_recorded_and_answers_404(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        route = discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=fake.guild.id)
        with pytest.raises(discord.NotFound):
            await bot.http.request(route)

    (unexpected,) = fake.unexpected_calls
    assert unexpected.path == f"/guilds/{fake.guild.id}/bans"


async def test_synced_commands_are_stored_and_shape_injected_options(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        synced = await bot.tree.sync()
        fetched = await bot.tree.fetch_commands()
        with pytest.raises(ValueError, match="has no option"):
            await fake.slash_command("render", {"colour": "red"})
        with pytest.raises(ValueError, match="at most 4096"):
            await fake.slash_command("render", {"size": 5000})
        call = await (await fake.slash_command("pick", {"sampler": "ddim"})).response()

    render = fake.synced_command("render")
    assert render is not None and render["options"][0]["type"] == 4
    assert {c.name for c in synced} == {c.name for c in fetched} >= {"hello", "render", "panel", "pick"}
    assert call.payload["data"]["content"] == "ddim"


async def test_autocomplete_answers_with_choices(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        handle = await fake.autocomplete("pick", {"sampler": "eul"}, focused="sampler")
        call = await handle.response()

    assert call.callback_type == CALLBACK_AUTOCOMPLETE_RESULT
    assert [c["value"] for c in call.payload["data"]["choices"]] == ["euler", "euler_ancestral"]


async def test_dropped_connection_resumes_and_replays_missed_events(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        await fake.drop_connection(code=4000)
        handle = await fake.slash_command("hello")  # sent now or replayed on RESUME
        call = await handle.response()
        await fake.wait_for_resume()

    ops = [f.op for f in fake.gateway_frames]
    assert ops.count(2) == 1 and ops.count(6) == 1  # one IDENTIFY, one RESUME
    assert fake.gateway.connections[1].path == "/resume"
    assert call.payload["data"]["content"] == "Hello, Alice!"
    assert len(fake.calls_to(CALLBACK_ROUTE)) == 1


async def test_wrong_token_fails_login(fake: FakeDiscord) -> None:
    bot = make_bot()
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()

    assert fake.calls[0].status == 401


async def test_disallowed_privileged_intent_closes_gateway_with_4014(fake: FakeDiscord) -> None:
    fake.deny_intents(discord.Intents(members=True).value)
    bot = commands.Bot(command_prefix="!", intents=discord.Intents(guilds=True, members=True))
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(bot.start(fake.token), timeout=10)
    finally:
        await bot.close()  # discord.py raises on 4014 without closing its HTTP session

    assert fake.gateway.live_sessions() == []


async def test_attachment_option_resolves_and_downloads_from_the_fake_cdn(fake: FakeDiscord) -> None:
    image = fake.upload("input.png", PNG_BYTES)
    async with running(fake, make_bot()):
        call = await (await fake.slash_command("measure", {"image": image})).response()

    assert call.payload["data"]["content"] == f"input.png: {len(PNG_BYTES)} bytes, image/png"
    assert fake.calls_to("GET /attachments/*")[0].params["attachment_id"] == str(image.id)


def test_components_over_discord_limits_are_reported_like_discord() -> None:
    buttons = [{"type": 2, "style": 1, "custom_id": f"b{i}", "label": "go"} for i in range(6)]
    duplicate = [{"type": 2, "style": 1, "custom_id": "same"}, {"type": 2, "style": 1, "custom_id": "same"}]
    long_id = [{"type": 2, "style": 1, "custom_id": "x" * 101}]
    rows = [{"type": 1, "components": c} for c in (buttons, duplicate, long_id)]

    found = components_errors(rows, v2=False)["components"]

    assert found["0"]["components"]["_errors"][0]["code"] == "BASE_TYPE_BAD_LENGTH"
    assert (
        found["1"]["components"]["1"]["custom_id"]["_errors"][0]["code"] == "COMPONENT_CUSTOM_ID_DUPLICATED"
    )
    assert found["2"]["components"]["0"]["custom_id"]["_errors"][0]["code"] == "BASE_TYPE_BAD_LENGTH"
    assert components_errors([{"type": 1, "components": buttons[:5]}], v2=False) == {}


def test_command_sync_rejects_what_discord_rejects() -> None:
    good = {"name": "imagine", "description": "Make an image", "options": []}
    long_description = {"name": "status", "description": "x" * 101}
    capitalised = {"name": "Queue", "description": "Show the queue"}
    optional_first = {
        "name": "cancel",
        "description": "Cancel a job",
        "options": [
            {"type": 3, "name": "reason", "description": "why", "required": False},
            {"type": 3, "name": "job", "description": "which", "required": True},
        ],
    }

    found = commands_errors([good, long_description, capitalised, optional_first, dict(good)])

    assert set(found) == {"1", "2", "3", "4"}
    assert "description" in found["1"] and "name" in found["2"]
    assert "required" in found["3"]["options"]["1"]
    assert found["4"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMANDS_DUPLICATE_NAME"


async def test_select_menu_choice_reaches_the_view_of_the_message(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        await (await fake.slash_command("style")).response()
        menu = fake.latest_message()
        assert menu is not None
        with pytest.raises(ValueError, match="not options"):
            await fake.select(menu, "style", ["watercolour"])
        call = await (await fake.select(menu, "style", ["anime"])).response()

    assert call.callback_type == CALLBACK_UPDATE_MESSAGE
    assert (fake.message(menu.id).content, fake.message(menu.id).components) == ("Style: anime", [])


async def test_rejected_callback_is_handed_back_without_waiting(fake: FakeDiscord) -> None:
    fake.fail_next(CALLBACK_ROUTE, 400, code=50035, message="Invalid Form Body")
    async with running(fake, make_bot()):
        call = await (await fake.slash_command("hello")).response(timeout=2)

    assert (call.ok, call.status) == (False, 400)


async def test_fetches_return_the_fake_world(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        channel = await bot.fetch_channel(fake.channel.id)
        guild = await bot.fetch_guild(fake.guild.id)
        admin = await guild.fetch_member(fake.admin.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("hello")
        fetched = await channel.fetch_message(sent.id)

    assert (channel.name, guild.name, guild.premium_tier) == ("general", "Test Server", 0)
    assert [r.name for r in admin.roles if not r.is_default()] == ["Admin"]
    assert fetched.content == "hello" and fetched.author.id == fake.application_id
    assert fake.unexpected_calls == []


async def test_bad_gateway_page_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        fake.fail_next(SEND_ROUTE, 502)
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("after one retry")  # discord.py sleeps 1 s before retrying a 5xx

    failed, sent = fake.calls_to(SEND_ROUTE)
    assert (failed.status, failed.response_headers["Content-Type"]) == (502, "text/html")
    assert sent.ok


async def test_leaving_the_fake_restores_discord_py_endpoints() -> None:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        assert discord.http.Route.BASE == f"{fake.http_base}/api/v10"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == f"{fake.ws_base}/"

    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == (base, gateway)


# --- reactions, DMs, deletes, modals, attachments, mentions --------------------------------------------


async def test_member_reaction_reaches_a_restarted_bot_as_a_raw_event(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("your grid")

    bot = make_bot()  # a new process: the message is in no cache, only raw events can report on it
    events = Recorder(bot, "raw_reaction_add", "raw_reaction_remove", "reaction_add")
    async with running(fake, bot):
        added = await fake.react(sent.id, "✉️", user=fake.user)
        kind, raw = await events.next()
        removed = await fake.unreact(sent.id, "✉️", user=fake.user)
        kind_removed, raw_removed = await events.next()

    assert kind == "raw_reaction_add" and isinstance(raw, discord.RawReactionActionEvent)
    assert (raw.message_id, raw.channel_id, raw.guild_id) == (sent.id, fake.channel.id, fake.guild.id)
    assert (raw.user_id, raw.message_author_id, str(raw.emoji), raw.burst) == (
        fake.user.id,
        fake.application_id,
        "✉️",
        False,
    )
    assert raw.member is not None and raw.member.display_name == "Alice"
    assert added is not None and added["member"]["user"]["id"] == str(fake.user.id)
    assert added["emoji"] == {"id": None, "name": "✉️"} and added["type"] == 0
    assert kind_removed == "raw_reaction_remove" and isinstance(raw_removed, discord.RawReactionActionEvent)
    assert raw_removed.member is None and raw_removed.user_id == fake.user.id
    assert removed is not None and "member" not in removed and "message_author_id" not in removed
    assert not fake.message(sent.id).reacted("✉️", fake.user)
    assert fake.dispatched("MESSAGE_REACTION_ADD") == [added]


async def test_reactions_are_not_sent_without_the_reactions_intent(fake: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.reactions = False
    bot = make_bot(intents=intents)
    events = Recorder(bot, "raw_reaction_add")
    async with running(fake, bot) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("your grid")
        added = await fake.react(sent.id, "❌", user=fake.admin)
        await (await fake.slash_command("hello")).response()  # gateway events arrive in order

    assert added is not None and fake.message(sent.id).reacted("❌", fake.admin)
    assert fake.dispatched("MESSAGE_REACTION_ADD") == []
    assert events.seen.empty()


async def test_reacting_twice_sends_one_event_and_non_members_cannot_react(fake: FakeDiscord) -> None:
    outsider = fake.add_user("mallory")
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("your grid")
        first = await fake.react(sent.id, "✉️")
        second = await fake.react(sent.id, "✉️")
        with pytest.raises(ValueError, match="not a member"):
            await fake.react(sent.id, "✉️", user=outsider)
        with pytest.raises(ValueError, match="not an emoji"):
            await fake.react(sent.id, "x")

    assert first is not None and second is None
    assert len(fake.dispatched("MESSAGE_REACTION_ADD")) == 1


async def test_bot_adds_lists_and_removes_reactions_over_rest(fake: FakeDiscord) -> None:
    bot = make_bot()
    events = Recorder(bot, "raw_reaction_add")
    async with running(fake, bot):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("your grid")
        await sent.add_reaction("✉️")
        await sent.add_reaction("❌")
        _, own = await events.next()
        await fake.react(sent.id, "✉️", user=fake.user)
        fetched = await channel.fetch_message(sent.id)
        envelope = next(r for r in fetched.reactions if str(r.emoji) == "✉️")
        reactors = [u.id async for u in envelope.users()]
        await sent.remove_reaction("❌", bot.user)  # type: ignore[arg-type]
        with pytest.raises(discord.HTTPException) as unknown:
            await sent.add_reaction("x")
        with pytest.raises(discord.Forbidden) as forbidden:
            await sent.remove_reaction("✉️", discord.Object(fake.user.id))

    assert isinstance(own, discord.RawReactionActionEvent) and own.user_id == fake.application_id
    assert (envelope.count, envelope.me) == (2, True)
    assert sorted(reactors) == sorted([fake.application_id, fake.user.id])
    assert fake.calls_to(ADD_REACTION_ROUTE)[0].params["emoji"] == "✉️"
    assert [c.status for c in fake.calls_to(REMOVE_OWN_REACTION_ROUTE)] == [204]
    assert fake.message(sent.id).reactions == {"✉️": [fake.application_id, fake.user.id]}
    assert (unknown.value.status, unknown.value.code) == (400, 10014)
    assert forbidden.value.code == 50013  # removing someone else's reaction needs Manage Messages


async def test_dm_with_a_file_is_recorded_in_the_members_dm_channel(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        member = await bot.fetch_user(fake.user.id)
        sent = await member.send(
            "a lighthouse at dusk --seed 7", file=discord.File(io.BytesIO(PNG_BYTES), "0.png")
        )
        again = await member.send("second")

    channel = fake.dm_channel(fake.user)
    assert channel is not None and channel.recipient == fake.user
    assert [m.id for m in fake.dm_messages(fake.user)] == [sent.id, again.id]
    first = fake.dm_messages(fake.user)[0]
    assert (first.content, first.guild_id, [a.filename for a in first.attachments]) == (
        "a lighthouse at dusk --seed 7",
        None,
        ["0.png"],
    )
    assert fake.calls_to(CREATE_DM_ROUTE)[0].payload == {"recipient_id": fake.user.id}
    assert fake.messages_in(fake.channel) == []


async def test_reaction_in_a_dm_comes_without_guild_or_member(fake: FakeDiscord) -> None:
    bot = make_bot()
    events = Recorder(bot, "raw_reaction_add")
    async with running(fake, bot):
        sent = await (await bot.fetch_user(fake.user.id)).send("your image")
        added = await fake.react(sent.id, "❌", user=fake.user)
        _, raw = await events.next()
        with pytest.raises(ValueError, match="cannot see the DMs"):
            await fake.react(sent.id, "❌", user=fake.admin)

    assert isinstance(raw, discord.RawReactionActionEvent)
    assert (raw.guild_id, raw.member, raw.user_id) == (None, None, fake.user.id)
    assert added is not None and "guild_id" not in added and "member" not in added


async def test_closed_dms_answer_cannot_send_messages_to_this_user(fake: FakeDiscord) -> None:
    fake.set_dms_open(fake.user, False)
    async with running(fake, make_bot()) as bot:
        member = await bot.fetch_user(fake.user.id)
        with pytest.raises(discord.Forbidden) as closed:
            await member.send("your image")

    assert (closed.value.status, closed.value.code) == (403, 50007)
    assert fake.dm_channel(fake.user) is not None and fake.dm_messages(fake.user) == []


async def test_deleted_message_is_recorded_and_announced_on_the_gateway(fake: FakeDiscord) -> None:
    bot = make_bot()
    events = Recorder(bot, "raw_message_delete")
    async with running(fake, bot):
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        status = await channel.send("Queued, position 1")
        await status.delete()
        _, raw = await events.next()
        with pytest.raises(discord.NotFound) as gone:
            await status.delete()

    assert isinstance(raw, discord.RawMessageDeleteEvent) and raw.message_id == status.id
    assert fake.message(status.id).deleted and fake.message(status.id).deleted_at is not None
    assert fake.latest_message() is None
    assert fake.dispatched("MESSAGE_DELETE") == [
        {"id": str(status.id), "channel_id": str(fake.channel.id), "guild_id": str(fake.guild.id)}
    ]
    assert [c.status for c in fake.calls_to(DELETE_ROUTE)] == [204, 404] and gone.value.code == 10008


async def test_message_delete_needs_the_guild_messages_intent(fake: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.guild_messages = False
    async with running(fake, make_bot(intents=intents)) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        await (await channel.send("Queued")).delete()

    assert fake.dispatched("MESSAGE_DELETE") == []


async def test_modal_from_a_button_is_recorded_and_submitted_through_discord_py(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        await (await fake.slash_command("remix")).response()
        grid = fake.latest_message()
        assert grid is not None
        click = await fake.click(grid, "remix:1")
        opened = await click.response()
        modal = click.modal()
        with pytest.raises(ValueError, match="no input"):
            await fake.submit_modal(click, {"seed": "7"})
        with pytest.raises(ValueError, match="required"):
            await fake.submit_modal(click, {"prompt": ""})
        with pytest.raises(ValueError, match="characters"):
            await fake.submit_modal(click, {"zoom": "1.25"})
        submit = await fake.submit_modal(click, {"zoom": "1.5"})
        answer = await submit.response()
        with pytest.raises(ValueError, match="already submitted"):
            await fake.submit_modal(click)

    assert opened.callback_type == CALLBACK_MODAL
    assert modal is not None and (modal["custom_id"], modal["title"]) == ("remix:modal", "Remix")
    assert submit.payload["type"] == INTERACTION_MODAL_SUBMIT
    assert submit.payload["message"]["id"] == str(grid.id)
    display, row, label = submit.payload["data"]["components"]
    assert display["type"] == 10 and "content" not in display
    assert row == {
        "type": 1,
        "components": [{"type": 4, "custom_id": "prompt", "value": "a lighthouse at dusk"}],
    }
    assert label["type"] == 18 and label["component"] == {"type": 4, "custom_id": "zoom", "value": "1.5"}
    assert answer.callback_type == CALLBACK_UPDATE_MESSAGE
    assert fake.message(grid.id).content == "a lighthouse at dusk --zoom 1.5"


async def test_submitting_without_a_modal_is_a_test_error(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()):
        handle = await fake.slash_command("hello")
        await handle.response()
        with pytest.raises(ValueError, match="not answered with a modal"):
            await fake.submit_modal(handle, {"prompt": "x"})


async def test_several_attachment_options_keep_their_names_and_content_types(fake: FakeDiscord) -> None:
    first = fake.upload("a.png", png_bytes(24, 16), content_type="image/png")
    second = fake.upload("photo", png_bytes(8, 8), content_type="image/webp")
    async with running(fake, make_bot()):
        call = await (await fake.slash_command("mix", {"image1": first, "image2": second})).response()

    first_size, second_size = len(first.data), len(second.data)
    assert call.payload["data"]["content"] == (
        f"a.png {first_size} image/png 24x16; photo {second_size} image/webp 8x8"
    )
    interaction = fake.world.interactions[max(fake.world.interactions)]
    resolved = interaction.payload["data"]["resolved"]["attachments"]
    assert set(resolved) == {str(first.id), str(second.id)}
    assert [o["type"] for o in interaction.payload["data"]["options"]] == [11, 11]


async def test_allowed_mentions_decide_who_is_notified(fake: FakeDiscord) -> None:
    async with running(fake, make_bot()) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        both = f"<@{fake.user.id}> <@{fake.admin.id}> your grid"
        owner_only = discord.AllowedMentions(users=[discord.Object(fake.user.id)])
        only_owner = await channel.send(both, allowed_mentions=owner_only)
        everyone = await channel.send(both)
        nobody = await channel.send(both, allowed_mentions=discord.AllowedMentions.none())

    assert fake.message(only_owner.id).mentions == [fake.user]
    assert fake.message(everyone.id).mentions == [fake.user, fake.admin]
    assert fake.message(nobody.id).mentions == []
    assert [u.id for u in only_owner.mentions] == [fake.user.id]  # discord.py reads the answer's mentions
    exclusive = allowed_mentions_errors({"parse": ["users"], "users": ["1"]})
    assert exclusive["allowed_mentions"]["_errors"][0]["code"] == "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"


# --- sharding: several sessions, each gets only the guilds of its shard ----------------------------------


class ShardBot(commands.AutoShardedBot):
    """A discord.py AutoShardedBot running some shards; `/where` says which bot and shard answered.

    Re-IDENTIFYing (not the first IDENTIFY) waits for `may_reidentify` instead of discord.py's default
    5 s sleep in `before_identify_hook`, so a test decides when a dropped shard comes back."""

    def __init__(self, name: str, shard_ids: list[int] | None, shard_count: int | None = 2) -> None:
        options: dict[str, Any] = {"shard_count": shard_count}
        if shard_ids is not None:
            options["shard_ids"] = shard_ids
        super().__init__(command_prefix="!", intents=discord.Intents.default(), **options)
        self.name = name
        self.answered: list[int] = []  # the guild of each /where this bot answered
        self.may_reidentify = asyncio.Event()
        self.may_reidentify.set()

        @self.tree.command(name="where", description="Which bot and shard answers")
        async def where(interaction: discord.Interaction) -> None:
            assert interaction.guild is not None
            self.answered.append(interaction.guild.id)
            await interaction.response.send_message(f"{self.name}: shard {interaction.guild.shard_id}")

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await self.may_reidentify.wait()


@contextlib.asynccontextmanager
async def running_shards(
    fake: FakeDiscord, *bots: commands.AutoShardedBot, shard_count: int = 2
) -> AsyncIterator[None]:
    """Start every bot, wait until all `shard_count` shards are READY (in whichever bot), close them after."""
    tasks = [asyncio.create_task(bot.start(fake.token)) for bot in bots]
    ready = asyncio.create_task(fake.wait_until_shards_ready(shard_count))
    try:
        done, _ = await asyncio.wait({*tasks, ready}, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task in done:
                task.result()
                raise AssertionError("a bot stopped before its shards were ready")
        await ready
        yield
    finally:
        ready.cancel()
        for bot in bots:
            await bot.close()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


def guild_on(fake: FakeDiscord, name: str, shard: tuple[int, int]) -> FakeChannel:
    """A guild on `shard` with Alice as a member; returns its text channel."""
    guild = fake.add_guild(name, shard=shard)
    fake.add_member(guild, fake.user)
    return fake.add_channel(guild, "general")


async def answer(fake: FakeDiscord, channel: FakeChannel) -> str:
    """Run /where in `channel` and return the text of the answer."""
    call = await (await fake.slash_command("where", channel=channel)).response()
    assert call.ok, call.response
    return str(call.payload["data"]["content"])


async def test_two_processes_with_one_shard_each_see_only_their_guilds(fake: FakeDiscord) -> None:
    on_zero = guild_on(fake, "Zero", (0, 2))
    on_one = guild_on(fake, "One", (1, 2))
    first, second = ShardBot("first", [0]), ShardBot("second", [1])
    async with running_shards(fake, first, second):
        # Interactions come after READY and GUILD_CREATE on the same socket: both caches are complete now.
        answers = [await answer(fake, fake.channel), await answer(fake, on_zero), await answer(fake, on_one)]
        first_guilds = sorted(g.id for g in first.guilds)
        second_guilds = sorted(g.id for g in second.guilds)
        shard_ids = (first.shard_ids, second.shard_ids)

    assert answers == ["first: shard 0", "first: shard 0", "second: shard 1"]
    assert first_guilds == sorted([fake.guild.id, on_zero.guild_id]) and second_guilds == [on_one.guild_id]
    assert (first.answered, second.answered) == ([fake.guild.id, on_zero.guild_id], [on_one.guild_id])
    assert shard_ids == ([0], [1])
    assert [f.data["shard"] for f in fake.gateway_frames if f.op == 2] == [[0, 2], [1, 2]]
    sessions = {s.shard: s for s in fake.gateway.sessions.values()}
    ready = {shard: json.loads(s.log[0][1])["d"] for shard, s in sessions.items()}
    assert ready[(1, 2)]["shard"] == [1, 2]
    assert [g["id"] for g in ready[(1, 2)]["guilds"]] == [str(on_one.guild_id)]
    assert {g["id"] for g in ready[(0, 2)]["guilds"]} == {str(fake.guild.id), str(on_zero.guild_id)}
    assert fake.gateway.live_sessions() == []  # AutoShardedClient.close() closes each shard with 1000


async def test_a_command_in_a_guild_on_shard_one_reaches_only_that_shard(fake: FakeDiscord) -> None:
    on_one = guild_on(fake, "One", (1, 2))
    first, second = ShardBot("first", [0]), ShardBot("second", [1])
    async with running_shards(fake, first, second):
        handle = await fake.slash_command("where", channel=on_one)
        call = await handle.response()
        await answer(fake, fake.channel)  # the first bot is alive and would have had time to see it

    assert call.payload["data"]["content"] == "second: shard 1"
    assert [s.shard for s in handle.delivery.sent] == [(1, 2)] and handle.delivery.queued == ()
    assert (first.answered, second.answered) == ([fake.guild.id], [on_one.guild_id])
    shard_zero = next(s for s in fake.gateway.sessions.values() if s.shard == (0, 2))
    assert str(handle.id) not in "".join(text for _, text in shard_zero.log)


async def test_a_bot_without_sharding_sees_every_guild(fake: FakeDiscord) -> None:
    on_zero = guild_on(fake, "Zero", (0, 2))
    on_one = guild_on(fake, "One", (1, 2))
    async with running(fake, make_bot()) as bot:
        await (await fake.slash_command("hello", channel=on_one)).response()
        await (await fake.slash_command("hello", channel=on_zero)).response()
        guilds = sorted(g.id for g in bot.guilds)

    assert guilds == sorted([fake.guild.id, on_zero.guild_id, on_one.guild_id])
    (identify,) = [f.data for f in fake.gateway_frames if f.op == 2]
    assert "shard" not in identify
    (session,) = fake.gateway.sessions.values()
    assert session.shard is None and "shard" not in json.loads(session.log[0][1])["d"]


async def test_dropped_shard_gets_nothing_until_discord_py_identifies_again(fake: FakeDiscord) -> None:
    on_one = guild_on(fake, "One", (1, 2))
    first, second = ShardBot("first", [0]), ShardBot("second", [1])
    async with running_shards(fake, first, second):
        assert await answer(fake, on_one) == "second: shard 1"
        second.may_reidentify.clear()
        (killed,) = await fake.drop_shard(1)  # like a killed process: the session ends with the connection
        lost = await fake.slash_command("where", channel=on_one)
        with pytest.raises(InteractionNotDelivered, match="reached no gateway session"):
            await lost.response()
        assert await answer(fake, fake.channel) == "first: shard 0"  # shard 0 goes on as before

        second.may_reidentify.set()  # discord.py RESUMEd, got INVALID_SESSION and waits to IDENTIFY
        back = await fake.wait_until_shards_ready(2, [1])
        later = await answer(fake, on_one)

    assert not lost.delivered and lost.delivery.sessions == ()
    assert later == "second: shard 1" and second.answered == [on_one.guild_id, on_one.guild_id]
    assert back[1] is not killed and not killed.alive
    second_frames = [f.op for f in fake.gateway_frames if f.connection > 2]
    assert second_frames.count(6) == 1 and second_frames.count(2) == 1  # one RESUME refused, one IDENTIFY
    assert lost.callback_type is None and first.answered == [fake.guild.id]


async def test_a_resumable_drop_replays_what_the_shard_missed(fake: FakeDiscord) -> None:
    on_one = guild_on(fake, "One", (1, 2))
    first, second = ShardBot("first", [0]), ShardBot("second", [1])
    async with running_shards(fake, first, second):
        second.may_reidentify.clear()  # a RESUME needs no IDENTIFY: nothing waits on this
        (blipped,) = await fake.drop_shard(1, 2, resumable=True)
        handle = await fake.slash_command("where", channel=on_one)  # sent now or replayed on RESUME
        call = await handle.response()
        await fake.wait_for_resume()

    assert call.payload["data"]["content"] == "second: shard 1"
    assert handle.delivery.sessions == (blipped,) and blipped.resumes == 1


async def test_events_follow_their_guilds_shard_and_dm_events_go_to_shard_zero(fake: FakeDiscord) -> None:
    on_one = guild_on(fake, "One", (1, 2))
    first, second = ShardBot("first", [0]), ShardBot("second", [1])
    first_events, second_events = Recorder(first, "raw_reaction_add"), Recorder(second, "raw_reaction_add")
    async with running_shards(fake, first, second):
        channel = second.get_channel(on_one.id)
        assert isinstance(channel, discord.TextChannel)
        in_guild = await channel.send("a grid on shard 1")
        dm = await (await second.fetch_user(fake.user.id)).send("a DM sent by shard 1's process")
        await fake.react(in_guild.id, "✉️")
        await fake.react(dm.id, "❌")
        _, on_second = await second_events.next()
        _, on_first = await first_events.next()
        await in_guild.delete()
        joined = await fake.announce_guild(fake.add_guild("Joined later", shard=(1, 2)))
        await answer(fake, on_one)  # the gateway keeps order: anything for the second bot came before this
        joined_id = joined.guild_id
        cached = (first.get_guild(joined_id or 0), second.get_guild(joined_id or 0))

    assert isinstance(on_second, discord.RawReactionActionEvent) and on_second.guild_id == on_one.guild_id
    assert isinstance(on_first, discord.RawReactionActionEvent) and on_first.guild_id is None
    assert first_events.seen.empty() and second_events.seen.empty()
    logs = {s.shard: [json.loads(text)["t"] for _, text in s.log] for s in fake.gateway.sessions.values()}
    assert logs[(0, 2)].count("MESSAGE_REACTION_ADD") == 1 and "MESSAGE_DELETE" not in logs[(0, 2)]
    assert logs[(1, 2)].count("MESSAGE_REACTION_ADD") == 1 and "MESSAGE_DELETE" in logs[(1, 2)]
    assert [s.shard for s in joined.sent] == [(1, 2)] and cached[0] is None and cached[1] is not None


async def test_one_process_runs_the_recommended_shards_from_gateway_bot() -> None:
    async with FakeDiscord(recommended_shards=2, max_concurrency=16) as fake:
        on_one = guild_on(fake, "One", (1, 2))
        bot = ShardBot("only", None, shard_count=None)  # asks GET /gateway/bot how many shards to run
        async with running_shards(fake, bot):
            answers = [await answer(fake, fake.channel), await answer(fake, on_one)]
            limits = await bot.fetch_session_start_limits()

    assert answers == ["only: shard 0", "only: shard 1"] and bot.shard_count == 2
    assert (limits.total, limits.remaining, limits.max_concurrency) == (1000, 998, 16)
    assert sorted(s.shard or (-1, 0) for s in fake.gateway.sessions.values()) == [(0, 2), (1, 2)]


async def test_identifying_faster_than_max_concurrency_is_refused_until_five_seconds_pass() -> None:
    async with FakeDiscord(enforce_max_concurrency=True) as fake:  # max_concurrency 1: one bucket
        on_one = guild_on(fake, "One", (1, 2))
        first, second = ShardBot("first", [0]), ShardBot("second", [1])
        second.may_reidentify.clear()
        tasks = [asyncio.create_task(first.start(fake.token))]
        try:
            await fake.wait_until_shards_ready(2, [0])
            tasks.append(asyncio.create_task(second.start(fake.token)))  # a second process, at once
            await fake.wait_until(lambda: fake.gateway.identify_refusals == [(1, 2)])
            fake.advance_time(5)  # what discord.py's before_identify_hook sleeps by default
            second.may_reidentify.set()
            await fake.wait_until_shards_ready(2, [1])
            later = await answer(fake, on_one)
        finally:
            for bot in (first, second):
                await bot.close()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    assert later == "second: shard 1"
    assert [f.data["shard"] for f in fake.gateway_frames if f.op == 2] == [[0, 2], [1, 2], [1, 2]]


async def test_a_shard_outside_the_shard_count_is_refused_with_4010(fake: FakeDiscord) -> None:
    bot = ShardBot("wrong", [2], shard_count=2)  # discord.py does not check shard_ids itself
    try:
        with pytest.raises(discord.ConnectionClosed) as closed:
            await asyncio.wait_for(bot.start(fake.token), timeout=10)
    finally:
        await bot.close()

    assert closed.value.code == 4010
    assert fake.gateway.live_sessions() == []


def test_guilds_land_on_the_shard_asked_for(fake: FakeDiscord) -> None:
    made = [fake.add_guild(f"g{i}", shard=(i % 3, 3)) for i in range(6)]

    assert [shard_of(g.id, 3) for g in made] == [0, 1, 2, 0, 1, 2]
    assert [g.id for g in made] == sorted(g.id for g in made)  # still increasing snowflakes
    assert all(shard_of(fake.guild.id, n) == 0 for n in (1, 2, 4, 8))
    with pytest.raises(ValueError, match="outside"):
        fake.add_guild("nowhere", shard=(2, 2))


SHARD_PROBE = '''
"""A bot process for the fake's sharding test: shard argv[1] of 2; /where answers with the pid."""
import asyncio
import os
import sys

import discord
from discord import app_commands


class Probe(discord.AutoShardedClient):
    def __init__(self, shard_id: int) -> None:
        super().__init__(intents=discord.Intents.default(), shard_count=2, shard_ids=[shard_id])
        self.tree = app_commands.CommandTree(self)

        @self.tree.command(name="where", description="Which process answers")
        async def where(interaction: discord.Interaction) -> None:
            shard = interaction.guild.shard_id if interaction.guild else None
            await interaction.response.send_message(f"pid {os.getpid()}: shard {shard}")


if __name__ == "__main__":
    asyncio.run(Probe(int(sys.argv[1])).start(sys.argv[2]))
'''


async def test_two_bot_processes_share_the_guilds_and_a_killed_one_loses_its_shard(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    on_one = guild_on(fake, "One", (1, 2))
    (tmp_path / "shard_probe.py").write_text(SHARD_PROBE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}

    async def spawn(shard_id: int) -> asyncio.subprocess.Process:
        argv = fake.pointed_command("shard_probe", str(shard_id), fake.token)
        return await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env)

    procs = [await spawn(0), await spawn(1)]
    pids = [p.pid for p in procs]
    try:
        await fake.wait_until_shards_ready(2, timeout=30)
        answers = [await answer(fake, fake.channel), await answer(fake, on_one)]
        procs[1].kill()
        await procs[1].wait()
        await fake.wait_until_shard_offline(1, 2)
        lost = await fake.slash_command("where", channel=on_one)
        procs.append(await spawn(1))
        await fake.wait_until_shards_ready(2, [1], timeout=30)
        again = await answer(fake, on_one)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert answers == [f"pid {pids[0]}: shard 0", f"pid {pids[1]}: shard 1"]
    # The killed process's session waits for a RESUME that never comes; nobody answers meanwhile.
    assert not lost.delivered and [s.shard for s in lost.delivery.queued] == [(1, 2)]
    assert lost.callback_type is None
    assert again == f"pid {procs[2].pid}: shard 1"
