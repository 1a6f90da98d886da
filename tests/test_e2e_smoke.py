"""The real bot starts against the fakes, opens its database, reaches ComfyUI and restarts cleanly."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import running_bot


async def test_the_bot_logs_in_starts_its_services_and_restarts(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as e2e:
        assert e2e.bot.user is not None and e2e.bot.user.id == e2e.discord.application_id
        assert e2e.services.started
        assert [b.up for b in e2e.services.scheduler.backends] == [True]
        assert (tmp_path / "data" / "e2e.db").is_file()
        await e2e.restart()
        assert e2e.services.started
        assert not e2e.history[0].services.started


async def test_sync_commands_registers_every_slash_command(tmp_path: Path) -> None:
    from bot.__main__ import _sync_commands
    from bot.config import load_config
    from tests.e2e import write_e2e_config
    from tests.fakes.discord_server import FakeDiscord

    async with FakeDiscord() as fake:
        config = load_config(write_e2e_config(tmp_path, fake.token, ["http://127.0.0.1:9"]), env={})
        assert await _sync_commands(config, [fake.guild.id]) == 0
        names = {"imagine", "queue", "cancel", "status", "settings"}
        assert all(fake.synced_command(name, fake.guild) for name in names)
        imagine = fake.synced_command("imagine", fake.guild)
        assert imagine is not None
        assert [o["name"] for o in imagine["options"]][:1] == ["prompt"]
    assert not (tmp_path / "data" / "e2e.db").exists()  # syncing does not start the services
