"""The `comfy-imagine` command line: run the bot, check the config, sync slash commands, generate images.

Exit codes: 0 ok, 1 runtime or backend error, 2 usage or config error. Logging is configured here, once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.config import TOKEN_ENV, Config, ConfigError, load_config

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("comfy_imagine")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run", "check", "health", "sync-commands", "generate", "copy-store")
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "config.toml"


class _RedactFilter(logging.Filter):
    """Replaces the bot token in any log record, in case a library ever prints it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg = message.replace(self.secret, "[token redacted]")
            record.args = None
        return True


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands (`run` is the default)."""
    parser = argparse.ArgumentParser(
        prog="comfy-imagine",
        description="A Midjourney-style /imagine Discord bot on your own ComfyUI servers.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
        )
        return command

    add("run", "run the bot (the default command)")
    add("check", "validate the config and reach every ComfyUI backend")
    add("health", "ask the running bot's /healthz (needs [metrics] port); exit 0 when healthy")
    sync = add("sync-commands", "register the slash commands with Discord")
    sync.add_argument(
        "--guild",
        type=int,
        action="append",
        help="guild id (repeatable); default: discord.guild_ids, else global",
    )
    generate = add("generate", "generate images from a prompt on the first reachable backend (no Discord)")
    generate.add_argument("prompt", metavar="PROMPT", help='e.g. "a red fox --ar 3:2 --seed 42 --no blur"')
    generate.add_argument("--out", required=True, metavar="DIR", help="folder for the images and the grid")
    generate.add_argument("--model", metavar="NAME", help="model to use unless the prompt says --model")
    copy = add("copy-store", "copy the SQLite store (storage.database) into an empty PostgreSQL database")
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host:port/db")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `comfy-imagine` console script and of `python -m bot`."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not any(a in COMMANDS for a in args_list) and not {"-h", "--help"} & set(args_list):
        args_list = _insert_default_command(args_list)
    args = build_parser().parse_args(args_list)
    _configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config.token:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_RedactFilter(config.token))
    try:
        if args.command == "check":
            return asyncio.run(_check(config))
        if args.command == "health":
            return asyncio.run(_health(config, args.config))
        if args.command == "sync-commands":
            return asyncio.run(_sync_commands(config, args.guild))
        if args.command == "generate":
            return _generate(config, args)
        if args.command == "copy-store":
            return asyncio.run(_copy_store(config, args.to))
        return _run(config)
    except KeyboardInterrupt:
        return EXIT_OK


def _insert_default_command(args: list[str]) -> list[str]:
    """Put `run` after the global options, so `comfy-imagine --config x` runs the bot."""
    index = 0
    while index < len(args) and args[index] == "--log-level":
        index += 2
    while index < len(args) and args[index].startswith("--log-level="):
        index += 1
    return [*args[:index], "run", *args[index:]]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if level == "INFO":
        # discord.http logs every rate-limit bucket at INFO; that is noise for an operator.
        logging.getLogger("discord.http").setLevel(logging.WARNING)


def _build_services(config: Config) -> Services | None:
    """Build the services; a template that cannot be loaded is a config error (printed, None returned)."""
    from bot.services import Services
    from comfy.workflow_template import TemplateError

    try:
        return Services(config)
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _missing_token(config: Config) -> bool:
    if config.token:
        return False
    print(
        f"error: discord.token is not set: put the bot token in the config file or in the {TOKEN_ENV} "
        "environment variable",
        file=sys.stderr,
    )
    return True


async def _check(config: Config) -> int:
    from bot.checks import run_checks

    report = await run_checks(config)
    for line in report.lines():
        print(line)
    return report.exit_code


async def _health(config: Config, path: str) -> int:
    """GET the running bot's /healthz; print its answer. Used by the Docker HEALTHCHECK."""
    import json

    import aiohttp

    settings = config.metrics
    if not settings.port:
        print(
            f"error: metrics.port is not set (or 0) in {path}; the health check asks the running bot's "
            "/healthz on that fixed port",
            file=sys.stderr,
        )
        return EXIT_USAGE
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    url = f"http://{host if ':' not in host else f'[{host}]'}:{settings.port}/healthz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url) as response,
        ):
            body = await response.text()
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"unhealthy: nothing answers at {url} (metrics.host / metrics.port): {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        summary = json.dumps(json.loads(body), sort_keys=True)
    except ValueError:
        summary = body[:200]
    print(f"{'healthy' if status == 200 else 'unhealthy'}: {summary}")
    return EXIT_OK if status == 200 else EXIT_RUNTIME


async def _copy_store(config: Config, to: str) -> int:
    """Copy the configured SQLite store into the empty PostgreSQL database `to`."""
    from bot.config import DatabaseUrl
    from bot.copy_store import CopyRefused, copy_store
    from bot.store import SchemaTooNew, StoreUnavailable

    source = config.storage.database_path
    if source is None:
        print(
            f"error: storage.database is already PostgreSQL ({config.storage.database}); copy-store copies "
            "an SQLite file",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        target = DatabaseUrl(to)
    except ValueError:
        print("error: --to must be a postgresql:// URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = await copy_store(source, target)
    except CopyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except (StoreUnavailable, SchemaTooNew, OSError) as exc:
        print(f"error: {target}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(
        f"copied {report.jobs} job(s), {report.outputs} image reference(s) and {report.settings} member "
        f"setting(s) from {source} to {target}; point storage.database at it"
    )
    return EXIT_OK


def _generate(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot.generate import generate_command
    from cogs._words.params import param_error_text  # the entry point composes every layer

    try:
        return asyncio.run(
            generate_command(config, args.prompt, Path(args.out), model=args.model, describe=param_error_text)
        )
    except KeyboardInterrupt:  # Ctrl-C before the command could take over the signal
        return EXIT_INTERRUPTED


async def _sync_commands(config: Config, guild_ids: list[int] | None) -> int:
    import aiohttp
    import discord

    from bot.imagine_bot import ImagineBot

    if _missing_token(config):
        return EXIT_USAGE
    targets = guild_ids or config.discord.guild_ids
    services = _build_services(config)
    if services is None:
        return EXIT_USAGE
    bot = ImagineBot(config=config, services=services, start_services=False)
    try:
        async with bot:
            await bot.login(config.token or "")
            if targets:
                for guild_id in targets:
                    guild = discord.Object(id=guild_id)
                    bot.tree.copy_global_to(guild=guild)
                    synced = await bot.tree.sync(guild=guild)
                    print(f"synced {len(synced)} command(s) to guild {guild_id}")
            else:
                synced = await bot.tree.sync()
                print(f"synced {len(synced)} global command(s) (may take up to an hour to appear)")
    except discord.LoginFailure:
        print("error: Discord rejected discord.token (reset it in the developer portal)", file=sys.stderr)
        return EXIT_USAGE
    except discord.HTTPException as exc:
        print(f"error: Discord answered {exc.status}: {exc.text}", file=sys.stderr)
        return EXIT_RUNTIME
    except (aiohttp.ClientError, OSError) as exc:
        print(f"error: cannot reach Discord: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _run(config: Config) -> int:
    if _missing_token(config):
        return EXIT_USAGE
    return asyncio.run(_run_bot(config))


async def _run_bot(config: Config) -> int:
    import aiohttp
    import discord

    from bot.imagine_bot import ImagineBot
    from bot.instance_lock import DatabaseInUse
    from bot.metrics import MetricsError
    from bot.store import SchemaTooNew

    services = _build_services(config)
    if services is None:
        return EXIT_USAGE
    bot = ImagineBot(config=config, services=services)
    shutdown: asyncio.Future[None] | None = None

    def on_signal() -> None:
        nonlocal shutdown
        if shutdown is None:
            shutdown = asyncio.ensure_future(bot.close())

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with bot:
            await bot.start(config.token or "")
            if shutdown is not None:
                # start() returns once the gateway is closed, while close() still stops the services
                # (jobs handed over, backend leases released): the loop must not end (and cancel it) first.
                await shutdown
    except discord.LoginFailure:
        print("error: Discord rejected discord.token (reset it in the developer portal)", file=sys.stderr)
        return EXIT_USAGE
    except (MetricsError, DatabaseInUse) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except SchemaTooNew as exc:
        print(f"error: storage.database ({config.storage.database}): {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except (discord.GatewayNotFound, discord.ConnectionClosed, aiohttp.ClientError, OSError) as exc:
        print(f"error: cannot stay connected to Discord: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
