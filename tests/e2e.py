"""End-to-end harness: the real ImagineBot (unmodified discord.py) against the fake Discord and fake ComfyUI.

async with running_bot(tmp_path) as e2e:
    handle = await e2e.discord.slash_command("imagine", {"prompt": "a fox --seed 1"})
    ...
    await e2e.restart()  # a new bot process on the same database and servers
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.config import Config, load_config
from bot.imagine_bot import ImagineBot
from bot.services import Services
from cogs._buttons import follow_up_job
from tests.fakes.comfy_server import FakeComfyUI
from tests.fakes.discord_models import FLAG_EPHEMERAL, RecordedCall, StoredMessage
from tests.fakes.discord_server import FakeDiscord, InteractionHandle

E2E_CONFIG = """
[discord]
token = "{token}"
admin_role_ids = []

[storage]
database = "data/e2e.db"
output_dir = "data/outputs"

{backends}

[[models]]
name = "tiny"
checkpoint = "random_sd15_tiny.safetensors"
width = 64
height = 64
steps = 4
cfg = 7.0
negative = "blurry"

[[models]]
name = "other"
checkpoint = "v1-5-pruned-emaonly.safetensors"
width = 64
height = 64
steps = 2

[[styles]]
name = "cinematic"
prefix = "cinematic still,"
suffix = ", film grain"
negative = "cartoon"

[progress]
edit_interval_s = 0.2
# The tests run many jobs in one channel quickly; the fake Discord enforces no edit limit unless asked.
channel_edits_per_5s = 50

[scheduler]
health_interval_s = 0.1
backend_grace_s = 2.0
"""


def write_e2e_config(folder: Path, token: str, backend_urls: list[str], extra: str = "") -> Path:
    """Write the end-to-end config (tiny 64x64 models, fast progress edits) and return its path."""
    backends = "\n".join(
        f'[[backends]]\nname = "gpu{index}"\nurl = "{url}"\n' for index, url in enumerate(backend_urls)
    )
    path = folder / "config.toml"
    path.write_text(E2E_CONFIG.format(token=token, backends=backends) + extra, encoding="utf-8")
    return path


@dataclass
class E2E:
    """A running bot with its fakes; `restart()` replaces the bot with a new one (same database)."""

    config: Config
    discord: FakeDiscord
    comfy: list[FakeComfyUI]
    bot: ImagineBot
    task: asyncio.Task[None]
    extensions: tuple[str, ...] | None = None
    history: list[ImagineBot] = field(default_factory=list)

    @property
    def services(self) -> Services:
        """The running bot's services (store, scheduler, bus)."""
        return self.bot.services

    async def stop(self) -> None:
        """Close the bot cleanly and wait for its task."""
        await self.bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)

    async def restart(self) -> None:
        """Stop this bot and start a new one on the same config, database and fakes."""
        await self.stop()
        self.history.append(self.bot)
        self.bot, self.task = await _start_bot(self.config, self.discord, self.extensions)


async def _start_bot(
    config: Config, discord_fake: FakeDiscord, extensions: tuple[str, ...] | None
) -> tuple[ImagineBot, asyncio.Task[None]]:
    kwargs = {} if extensions is None else {"extensions": extensions}
    bot = ImagineBot(config=config, services=Services(config), **kwargs)
    task = asyncio.create_task(bot.start(discord_fake.token), name="e2e-bot")
    ready = asyncio.create_task(discord_fake.wait_until_ready(timeout=15))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the bot's start-up error
        raise RuntimeError("the bot stopped during start-up")
    await ready
    # setup_hook (services, extensions) has run once the gateway session is up.
    return bot, task


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    comfy_count: int = 1,
    config_extra: str = "",
    extensions: tuple[str, ...] | None = None,
    step_time: float = 0.002,
    progress: Mapping[str, object] | None = None,
    scheduler: Mapping[str, object] | None = None,
) -> AsyncIterator[E2E]:
    """Start the fakes and the real bot; stop everything afterwards, even when the test fails.

    `progress` and `scheduler` override keys of `[progress]` and `[scheduler]` (which the TOML already sets).
    """
    fakes = [FakeComfyUI(step_time=step_time) for _ in range(comfy_count)]
    async with contextlib.AsyncExitStack() as stack:
        for fake in fakes:
            await stack.enter_async_context(fake)
        discord_fake = await stack.enter_async_context(FakeDiscord())
        path = write_e2e_config(tmp_path, discord_fake.token, [f.url for f in fakes], config_extra)
        config = load_config(path, env={})
        if progress:
            config = config.model_copy(update={"progress": config.progress.model_copy(update=dict(progress))})
        if scheduler:
            config = config.model_copy(
                update={"scheduler": config.scheduler.model_copy(update=dict(scheduler))}
            )
        bot, task = await _start_bot(config, discord_fake, extensions)
        e2e = E2E(config, discord_fake, fakes, bot, task, extensions)
        try:
            yield e2e
        finally:
            await e2e.stop()


# ------------------------------------------------------------------ helpers the end-to-end tests share

# The buttons under a finished grid (format with job=<id>): U1-U4, reroll, V1-V4.
GRID_IDS = [
    "ci:upscale_2x:{job}:1",
    "ci:upscale_2x:{job}:2",
    "ci:upscale_2x:{job}:3",
    "ci:upscale_2x:{job}:4",
    "ci:reroll:{job}",
    "ci:vary_strong:{job}:1",
    "ci:vary_strong:{job}:2",
    "ci:vary_strong:{job}:3",
    "ci:vary_strong:{job}:4",
]


def png(width: int = 32, height: int = 32, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small PNG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def ephemeral_text(call: RecordedCall) -> str:
    """The text of an ephemeral interaction answer (a response or a followup)."""
    data = call.payload["data"] if "data" in call.payload else call.payload
    assert data.get("flags", 0) & FLAG_EPHEMERAL, f"not ephemeral: {call.payload}"
    return str(data["content"])


async def status_message(handle: InteractionHandle) -> StoredMessage:
    """The status message /imagine answered with."""
    call = await handle.response()
    assert call.ok, call.response
    message = handle.original()
    assert message is not None
    return message


def job_id_of(message: StoredMessage) -> int:
    """The job a message of the bot shows, read from its buttons (`ci:<action>:<job>`), now or in any earlier
    version (a status message keeps its Cancel button in its history)."""
    for payload in (message.payload(), *reversed(message.history)):
        for row in payload.get("components", []):
            for component in row.get("components", []):
                found = re.fullmatch(r"ci:[^:]+:(\d+)(?::\d)?", component.get("custom_id", ""))
                if found:
                    return int(found.group(1))
    raise AssertionError(f"message {message.id} names no job: {message.payload()}")


def result_of(e2e: E2E, job_id: int) -> StoredMessage | None:
    """The live message that carries a job's result: an image with the job's follow-up buttons."""
    fake = e2e.discord
    for message in fake.world.messages.values():
        if message.deleted or message.ephemeral or not message.attachments:
            continue
        if any(follow_up_job(i) == job_id for i in message.custom_ids()):
            return message
    return None


async def wait_for_result(e2e: E2E, status_message_id: int, limit_s: float = 10.0) -> StoredMessage:
    """Wait until the job of a status message is shown (its result posted and recorded, the status message
    deleted) and return the result message."""
    fake = e2e.discord
    job_id = job_id_of(fake.message(status_message_id))
    await fake.wait_until(lambda: result_of(e2e, job_id) is not None, timeout=limit_s)
    await shown(e2e, job_id)
    result = result_of(e2e, job_id)
    assert result is not None
    return result


def rows(message: StoredMessage) -> list[list[str]]:
    """The labels (or emoji) of a message's buttons, row by row."""
    return [[c.get("label") or c["emoji"]["name"] for c in row["components"]] for row in message.components]


async def guild_jobs(e2e: E2E) -> list[Any]:
    return await e2e.services.store.list_guild_jobs(e2e.discord.guild.id)


async def shown(e2e: E2E, job_id: int) -> None:
    """Wait until the bot has finished showing the job (its result message is recorded)."""
    cog = e2e.bot.get_cog("Imagine")
    assert cog is not None
    async with asyncio.timeout(10):
        await cog.presenter.wait_shown(job_id)  # type: ignore[attr-defined]
