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
