"""The command line as an operator meets it: help, check, exit codes, no tracebacks."""

from __future__ import annotations

from aiohttp import web

from tests.cli import run_cli


async def test_help_lists_the_commands() -> None:
    code, out, _ = await run_cli("--help")
    assert code == 0
    for command in ("run", "check", "sync-commands"):
        assert command in out


async def test_check_on_the_example_config_explains_what_is_missing() -> None:
    code, out, err = await run_cli("check", "--config", "config.example.toml")
    assert code == 2
    assert "discord.token is not set" in out
    assert "DISCORD_TOKEN" in out
    assert "Traceback" not in out + err


async def test_check_reports_an_unreachable_backend_with_exit_1(write_config, unused_tcp_port: int) -> None:
    path = write_config(url=f"http://127.0.0.1:{unused_tcp_port}")
    code, out, err = await run_cli("check", "--config", str(path), env_extra={"DISCORD_TOKEN": "t.o.k"})
    assert code == 1
    assert f"http://127.0.0.1:{unused_tcp_port}" in out and "unreachable" in out
    assert "Traceback" not in out + err
    assert "t.o.k" not in out + err


async def test_check_passes_against_a_live_backend(write_config) -> None:
    async def system_stats(_: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.3.64"}, "devices": []})

    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        path = write_config(url=f"http://127.0.0.1:{port}")
        code, out, _ = await run_cli("check", "--config", str(path), env_extra={"DISCORD_TOKEN": "t.o.k"})
    finally:
        await runner.cleanup()
    assert code == 0, out
    assert "ComfyUI 0.3.64" in out
    assert "all checks passed" in out


async def test_misspelled_key_names_the_key_and_exits_2(write_config) -> None:
    path = write_config(extra="\n[limits]\nper_user_actve = 3\n")
    code, out, err = await run_cli("check", "--config", str(path))
    assert code == 2
    assert "limits.per_user_actve: unknown key; did you mean 'per_user_active'?" in err
    assert "Traceback" not in out + err


async def test_run_is_the_default_command_and_refuses_to_start_without_a_token(write_config) -> None:
    path = write_config()
    code, _, err = await run_cli("--config", str(path))
    assert code == 2
    assert "discord.token is not set" in err


async def test_unknown_command_line_option_is_a_usage_error() -> None:
    code, _, err = await run_cli("check", "--no-such-option")
    assert code == 2
    assert "usage:" in err
