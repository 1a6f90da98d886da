"""A fake Discord (REST + Gateway on loopback) that an unmodified discord.py 2.7 bot logs into.

    async with FakeDiscord() as fake:               # server on 127.0.0.1:0, discord.py pointed at it
        task = asyncio.create_task(bot.start(fake.token))
        await fake.wait_until_ready()               # READY and every GUILD_CREATE sent
        before = fake.mark()
        handle = await fake.slash_command("imagine", {"prompt": "a lighthouse"}, user=fake.user)
        call = await handle.response()              # the recorded interaction callback
        edit = await fake.wait_for_call(EDIT_ROUTE, since=before)
        click = await fake.click(handle.original(), "upscale:1:...", user=fake.user)
        submit = await fake.submit_modal(click, {"prompt": "a fox"})   # after the bot answered with a modal
        await fake.react(result, "✉️", user=fake.user)  # MESSAGE_REACTION_ADD, raw payload
        other = fake.add_guild("Other", shard=(1, 2))   # its events go to shard 1 of 2 only
        await fake.wait_until_shards_ready(2)           # sessions from one or several processes
        fake.dm_messages(fake.user); fake.message(status.id).deleted; fake.dispatched("MESSAGE_DELETE")
        ...
        await bot.close(); await task               # before leaving the fake

What discord.py 2.7 does (read from its source) and how the fake answers it, as Discord would:
- Endpoints: REST and interaction webhooks both use `discord.http.Route.BASE`; the gateway is
  `DiscordWebSocket.DEFAULT_GATEWAY`, then READY's `resume_gateway_url` (here `/resume`) for RESUME.
  `FakeDiscord.patched()` sets and restores both; `async with FakeDiscord()` does it for you.
- Transport: discord.py asks for `compress=zstd-stream` when zstandard imports, else `zlib-stream`
  (chosen by `discord.utils._ActiveDecompressionContext`); the fake serves either, or plain text.
- Readiness: `on_ready` fires `guild_ready_timeout` (2 s) after the last GUILD_CREATE, but interactions
  are handled as soon as GUILD_CREATE is parsed. The fake sends READY and all GUILD_CREATEs atomically
  before any `dispatch`, so await `wait_until_ready()` and dispatch: no 2 s wait, no need for on_ready.
- Closing: `bot.close()` ends up sending close code 4000 (its poll task wins the close race), so the
  session stays resumable, as it would on Discord; a new bot IDENTIFYs a new session.
- After INVALID_SESSION (`invalidate_sessions`) discord.py waits 5 s before it IDENTIFYs again; after
  RECONNECT or a dropped socket it RESUMEs at once (`request_reconnect`, `drop_connection`).
- HTTP: JSON is parsed only with `Content-Type: application/json` exactly. A 429 without `Via` is taken
  for a Cloudflare ban and raised; with `Via` it sleeps `retry_after` and retries. 500/502/504 are
  retried after 1 s, 3 s, ... (so inject them sparingly); interaction callbacks and followups (its
  webhook adapter) retry every 5xx, 503 too, up to 5 attempts. Interaction callbacks carry
  `?with_response=1` and get `{"interaction": ..., "resource": ...}` back.
- Interactions: a first response after 3 s is 404 Unknown interaction (10062); a token older than
  15 min (or `handle.expire()`) is 401 Invalid Webhook Token (50027); the first followup after a deferred
  response replaces the "is thinking..." message (discord.py's `defer` docs rely on that); ephemeral messages exist only for the interaction
  webhook (channel routes answer 404 Unknown Message); uploads over `attachment_size_limit` (by boost
  tier, or `upload_limit`) are 413 Request entity too large (40005).
- Bodies are validated like Discord does (content length, embeds, components, command definitions) and
  rejected with 400 Invalid Form Body (50035) and an `errors` tree that discord.py turns into text.
- Gateway events follow intents: MESSAGE_REACTION_ADD/REMOVE need GUILD_MESSAGE_REACTIONS (DMs:
  DIRECT_MESSAGE_REACTIONS), MESSAGE_DELETE needs GUILD_MESSAGES (DMs: DIRECT_MESSAGES). The fake sends no
  MESSAGE_CREATE, so discord.py never caches a message: reactions reach a bot only as raw events, as they
  do on Discord for any message older than the bot's process. The bot's own reactions come back to it too.
- DMs: `POST /users/@me/channels` always opens the channel; sending there answers 403 Cannot send messages
  to this user (50007) when the user closed DMs (`set_dms_open`) or is a bot.
- Mentions: a new message records whom it notified (`StoredMessage.mentions`): `<@id>` in its content that
  its `allowed_mentions` let through.
- Sharding: an IDENTIFY with `shard: [shard_id, num_shards]` (what `AutoShardedClient(shard_count=...,
  shard_ids=[...])` sends) gets READY (echoing `shard`) and GUILD_CREATE only for the guilds with
  `shard_of(guild_id, num_shards) == shard_id`; every later event about a guild (interactions, reactions,
  MESSAGE_DELETE, GUILD_*) goes only to the sessions whose shard holds it, events without a guild (DMs) to
  shard 0; a session without `shard` gets everything. Any number of sessions, from any number of processes,
  may be connected at once. `add_guild(..., shard=(1, 2))` places a guild; the default guild is on shard 0
  for every shard count that divides 8. An interaction no live session holds is lost: its handle says
  `delivered` False and `response()` raises InteractionNotDelivered. `AutoShardedClient.close()` closes each
  shard with 1000, ending its sessions. discord.py sleeps 5 s in `before_identify_hook` before every
  IDENTIFY but a process's first (override the hook to decide when a dropped shard comes back).
  `GET /gateway/bot` answers `recommended_shards` and a session start limit with `max_concurrency`; with
  `enforce_max_concurrency`, a second IDENTIFY of a rate limit key within 5 s (fake clock) gets
  INVALID_SESSION, as on Discord.
- Bot processes: `fake.pointed_command("bot", "run", "--config", path)` is the argv that runs a module with
  discord.py pointed at this fake (`tests/fakes/run_pointed.py`); two of them with `shard_ids` [0] and [1]
  serve every guild. `wait_until_shards_ready`, `drop_shard`, `wait_until_shard_offline` and
  `gateway.live_sessions()` (each with its `.shard` and `.connected`) follow them.
"""

# Test helpers here take `timeout=` like asyncio.wait_for does; that reads better in tests.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import discord.gateway
import discord.http
import yarl
from aiohttp import web

from tests.fakes.discord_gateway import Delivery, GatewayServer, GatewaySession, ReceivedFrame
from tests.fakes.discord_models import (
    EVERYONE_PERMISSIONS,
    INTERACTION_APPLICATION_COMMAND,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_MESSAGE_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
    MANAGE_GUILD,
    FakeChannel,
    FakeClock,
    FakeDMChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    FakeWorld,
    InteractionRecord,
    RecordedCall,
    SnowflakeFactory,
    StoredAttachment,
    StoredMessage,
    reaction_key,
    shard_of,
)
from tests.fakes.discord_rest import (
    ADD_REACTION_ROUTE,
    CALLBACK_ROUTE,
    CREATE_DM_ROUTE,
    DELETE_ROUTE,
    EDIT_ORIGINAL_ROUTE,
    EDIT_ROUTE,
    FOLLOWUP_ROUTE,
    REMOVE_OWN_REACTION_ROUTE,
    SEND_ROUTE,
    FaultRule,
    RateLimitRule,
    RestApi,
    route_matches,
)

__all__ = [
    "ADD_REACTION_ROUTE",
    "APPLICATION_ID",
    "CALLBACK_ROUTE",
    "CREATE_DM_ROUTE",
    "DELETE_ROUTE",
    "EDIT_ORIGINAL_ROUTE",
    "EDIT_ROUTE",
    "FOLLOWUP_ROUTE",
    "REMOVE_OWN_REACTION_ROUTE",
    "SEND_ROUTE",
    "Delivery",
    "FakeDiscord",
    "InteractionHandle",
    "InteractionNotDelivered",
    "discord_py_pointed_at",
    "shard_of",
]

log = logging.getLogger(__name__)

APPLICATION_ID = 1_180_000_000_000_000_001  # modern applications: the bot user id is the application id
OWNER_ID = 1_180_000_000_000_000_002
DEFAULT_TOKEN = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.fake.discord-bot-token"

OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_MENTIONABLE = 9
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11


class InteractionNotDelivered(RuntimeError):
    """No gateway session holds the interaction's shard: no bot will ever see it (on Discord the user sees
    "This interaction failed" after 3 s)."""


class InteractionHandle:
    """An interaction the fake dispatched: await the bot's callback, read the messages it produced."""

    def __init__(
        self, fake: FakeDiscord, record: InteractionRecord, delivery: Delivery | None = None
    ) -> None:
        self._fake = fake
        self.record = record
        self._delivery = delivery  # None: the test dispatched the INTERACTION_CREATE itself

    @property
    def delivery(self) -> Delivery:
        """Which gateway sessions got the INTERACTION_CREATE (`sent`) or get it if they RESUME (`queued`).
        LookupError for a handle around an interaction the test dispatched itself."""
        if self._delivery is None:
            raise LookupError(f"interaction {self.id} was dispatched by the test; the fake did not route it")
        return self._delivery

    @property
    def delivered(self) -> bool:
        """Whether a connected session whose shard holds the guild got the INTERACTION_CREATE at once.

        False when the shard has no session (the interaction is lost) or only sessions between connections
        (it is replayed if one of them RESUMEs). True for a handle around an interaction the test
        dispatched itself."""
        return self._delivery is None or self._delivery.delivered

    def _check_reachable(self) -> None:
        if self._delivery is None or self._delivery.sessions:
            return
        live = self._fake.gateway.live_sessions()
        guild_id = self.record.guild_id
        counts = sorted({s.shard[1] for s in live if s.shard is not None})
        where = ", ".join(f"shard {shard_of(guild_id, n)} of {n}" for n in counts) if guild_id else "shard 0"
        raise InteractionNotDelivered(
            f"interaction {self.id} in guild {guild_id} ({where or 'no sharded session'}) reached no gateway "
            f"session: none holds its shard; live sessions: {[s.describe() for s in live] or 'none'}"
        )

    @property
    def id(self) -> int:
        """The interaction id."""
        return self.record.id

    @property
    def token(self) -> str:
        """The interaction token (used by the callback and the webhook routes)."""
        return self.record.token

    @property
    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE payload as dispatched."""
        return self.record.payload

    @property
    def callback_type(self) -> int | None:
        """The callback type the bot answered with, None before it answered."""
        return self.record.callback_type

    async def response(self, timeout: float = 5.0) -> RecordedCall:
        """The bot's final callback call (check `.ok`: Discord may have rejected it), waiting for it.

        Attempts that discord.py retries by itself (429, 5xx) are skipped. InteractionNotDelivered at once
        when no session holds the interaction's shard."""
        self._check_reachable()
        future = self.record.response
        assert future is not None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            seen = [f"{c.method} {c.path} -> {c.status}" for c in self._fake.calls if self.token in c.path]
            where = "connected gateway sessions: " + str(len(self._fake.gateway.connected_sessions()))
            if self._delivery is not None:
                sent = [s.describe() for s in self._delivery.sent] or "none"
                queued = [s.describe() for s in self._delivery.queued] or "none"
                where = f"sent to: {sent}; queued for: {queued}"
            raise TimeoutError(
                f"the bot did not answer interaction {self.id} within {timeout}s; its calls: {seen or 'none'}; "
                f"{where}"
            ) from None

    def modal(self) -> dict[str, Any] | None:
        """The modal the bot answered with (callback type 9: custom_id, title, components), None if none."""
        return self.record.modal

    def original(self) -> StoredMessage | None:
        """The message `@original` refers to (the response, the deferred placeholder or the clicked message)."""
        message_id = self.record.original_message_id
        return None if message_id is None else self._fake.world.messages.get(message_id)

    def messages(self) -> list[StoredMessage]:
        """Every message created through this interaction (response and followups), oldest first."""
        return [self._fake.world.messages[m] for m in self.record.message_ids]

    async def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[StoredMessage]:
        """Wait until this interaction produced `count` finished (not "thinking...") messages."""
        self._check_reachable()

        def finished() -> list[StoredMessage]:
            return [m for m in self.messages() if not m.loading]

        await self._fake.wait_until(lambda: len(finished()) >= count, timeout=timeout)
        return finished()

    def expire(self) -> None:
        """Make the token invalid now: webhook calls answer 401 Invalid Webhook Token (50027)."""
        self.record.expired = True


class FakeDiscord:
    """The fake Discord: a world (guilds, users, messages), a REST API and a Gateway on one loopback port."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        heartbeat_interval_ms: int = 41_250,
        premium_tier: int = 0,
        recommended_shards: int = 1,
        max_concurrency: int = 1,
        enforce_max_concurrency: bool = False,
    ) -> None:
        self.clock = FakeClock()
        bot = FakeUser(APPLICATION_ID, "ImagineBot", bot=True, discriminator="4242")
        owner = FakeUser(OWNER_ID, "owner", global_name="Server Owner")
        self.world = FakeWorld(
            token=token,
            clock=self.clock,
            snowflake=SnowflakeFactory(self.clock),
            application_id=APPLICATION_ID,
            bot_user=bot,
            owner=owner,
            recommended_shards=recommended_shards,
            max_concurrency=max_concurrency,
        )
        self.world.users.update({bot.id: bot, owner.id: owner})
        self._changed = asyncio.Condition()
        self.rest = RestApi(self.world, changed=self._changed)
        self.gateway = GatewayServer(
            self.world,
            changed=self._changed,
            ws_base=lambda: self.ws_base,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self.gateway.enforce_max_concurrency = enforce_max_concurrency
        self.rest.send_event = self._send_event
        self._submitted_modals: set[int] = set()
        self._runner: web.AppRunner | None = None
        self._exit_stack = contextlib.ExitStack()

        # On shard 0 for every shard count that divides 8, so sharded tests know where it is.
        self.guild = self.add_guild("Test Server", premium_tier=premium_tier, shard=(0, 8))
        self.channel = self.add_channel(self.guild, "general")
        self.admin_role = self.add_role(self.guild, "Admin", permissions=MANAGE_GUILD)
        self.user = self.add_user("alice", global_name="Alice")
        self.add_member(self.guild, self.user)
        self.admin = self.add_user("bob", global_name="Bob")
        self.add_member(self.guild, self.admin, roles=[self.admin_role])

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        self.rest.register(app)
        self.gateway.register(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.world.http_base = f"http://{host}:{port}"
        log.debug("fake discord listening on %s", self.world.http_base)

    async def close(self) -> None:
        """Close gateway connections (1001) and stop the server."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        self._exit_stack.enter_context(self.patched())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._exit_stack.close()
        await self.close()

    def patched(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py's REST (and interaction webhooks) and Gateway at this fake; restore on exit."""
        return discord_py_pointed_at(self.http_base)

    def pointed_command(self, module: str, *args: str) -> list[str]:
        """The argv that runs `python -m module args...` with discord.py pointed at this fake, for a bot
        in a subprocess: `asyncio.create_subprocess_exec(*fake.pointed_command("bot", "run", ...))`
        (with PYTHONPATH set to the repository)."""
        return [sys.executable, "-m", "tests.fakes.run_pointed", self.http_base, module, *args]

    # --- identity --------------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The bot token the fake accepts."""
        return self.world.token

    @property
    def application_id(self) -> int:
        """The application id (equal to the bot user id)."""
        return self.world.application_id

    @property
    def bot_user(self) -> FakeUser:
        """The bot's user."""
        return self.world.bot_user

    @property
    def http_base(self) -> str:
        """`http://127.0.0.1:PORT`."""
        if not self.world.http_base:
            raise RuntimeError("the fake Discord is not started")
        return self.world.http_base

    @property
    def api_base(self) -> str:
        """The value for `discord.http.Route.BASE`."""
        return self.http_base + "/api/v10"

    @property
    def ws_base(self) -> str:
        """`ws://127.0.0.1:PORT` (the gateway is at `/`, RESUME at `/resume`)."""
        return self.http_base.replace("http://", "ws://", 1)

    # --- building the world ---------------------------------------------------------------------------

    def add_user(self, username: str, *, global_name: str | None = None, bot: bool = False) -> FakeUser:
        """A new user (not yet a member of any guild)."""
        user = FakeUser(self.world.snowflake(), username, global_name=global_name, bot=bot)
        self.world.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        premium_tier: int = 0,
        features: Iterable[str] = (),
        locale: str = "en-US",
        everyone_permissions: int = EVERYONE_PERMISSIONS,
        shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """A guild owned by `world.owner` with the bot as a member; call before the bot connects,
        or follow with `announce_guild`. `shard=(shard_id, shard_count)` picks an id whose events go to
        that shard (`shard_of(guild.id, shard_count) == shard_id`)."""
        snowflake = self.world.snowflake() if shard is None else self.world.snowflake.on_shard(*shard)
        guild = FakeGuild(
            id=snowflake,
            name=name,
            owner_id=self.world.owner.id,
            premium_tier=premium_tier,
            features=list(features),
            locale=locale,
        )
        guild.roles[guild.id] = FakeRole(guild.id, "@everyone", permissions=everyone_permissions)
        self.world.guilds[guild.id] = guild
        self.add_member(guild, self.world.owner)
        self.add_member(guild, self.world.bot_user)
        return guild

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0) -> FakeRole:
        """A role in `guild` with the given permission bits."""
        role = FakeRole(self.world.snowflake(), name, permissions=permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_channel(self, guild: FakeGuild, name: str, *, topic: str | None = None) -> FakeChannel:
        """A text channel in `guild`."""
        channel = FakeChannel(
            self.world.snowflake(), guild.id, name, position=len(guild.channels), topic=topic
        )
        guild.channels[channel.id] = channel
        return channel

    def add_member(
        self, guild: FakeGuild, user: FakeUser, *, roles: Sequence[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        """Make `user` a member of `guild` with `roles`."""
        member = FakeMember(user, guild.id, [r.id for r in roles], nick=nick)
        guild.members[user.id] = member
        return member

    def set_channel_access(self, channel: FakeChannel, accessible: bool) -> None:
        """Whether the bot can reach the channel over REST (False: 403 Missing Access, code 50001)."""
        channel.accessible = accessible

    async def announce_guild(self, guild: FakeGuild) -> Delivery:
        """Send GUILD_CREATE for a guild added after the bot connected (to the sessions of its shard)."""
        payload = guild.gateway_payload(bot_id=self.bot_user.id, all_members=False)
        return await self.dispatch("GUILD_CREATE", payload)

    def upload(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        channel: FakeChannel | None = None,
    ) -> StoredAttachment:
        """A file a user attached to a slash command option (pass it as the option's value); the bot can
        download it from the fake CDN (`Attachment.read()`). `content_type` defaults to a guess from the
        filename; images get their width and height, as on Discord."""
        channel = channel or self.channel
        return self.world.new_attachment(
            channel.id, filename, data, ephemeral=True, content_type=content_type
        )

    # --- direct messages ---------------------------------------------------------------------------

    def set_dms_open(self, user: FakeUser, open: bool) -> None:
        """Whether the bot may DM `user` (False: its messages there answer 403 Cannot send messages to
        this user, code 50007, as when a member closed DMs from server members or blocked the bot)."""
        user.dms_open = open

    def dm_channel(self, user: FakeUser) -> FakeDMChannel | None:
        """The bot's DM channel with `user`, None if the bot never opened one."""
        return next((c for c in self.world.dm_channels.values() if c.recipient.id == user.id), None)

    def dm_messages(self, user: FakeUser, *, include_deleted: bool = False) -> list[StoredMessage]:
        """The messages the bot sent to `user` in DMs, oldest first."""
        channel = self.dm_channel(user)
        return [] if channel is None else self.messages_in(channel, include_deleted=include_deleted)

    # --- reactions -------------------------------------------------------------------------------------

    async def react(
        self, message: StoredMessage | int, emoji: str, *, user: FakeUser | None = None
    ) -> dict[str, Any] | None:
        """`user` (default: `self.user`) reacts to a stored message with `emoji` ("✉️", or "name:id").

        Sends MESSAGE_REACTION_ADD to the bot if it asked for GUILD_MESSAGE_REACTIONS (DIRECT_MESSAGE_REACTIONS
        in DMs), with the raw payload Discord sends, so it works for messages from before a restart too.
        Returns that payload; None if `user` had already reacted so (Discord sends nothing then).
        ValueError for what the Discord client would not let `user` do."""
        stored, key, user = self._reaction_target(message, emoji, user)
        refusal = self.rest.reaction_refusal(stored, key, user)
        if refusal is not None:
            raise ValueError(f"{user.username} cannot react with {emoji!r}: {refusal.message}")
        return await self.rest.set_reaction(stored, key, user, present=True)

    async def unreact(
        self, message: StoredMessage | int, emoji: str, *, user: FakeUser | None = None
    ) -> dict[str, Any] | None:
        """`user` removes their `emoji` reaction: MESSAGE_REACTION_REMOVE (same intents as `react`).
        Returns that payload; None if `user` had not reacted so."""
        stored, key, user = self._reaction_target(message, emoji, user)
        return await self.rest.set_reaction(stored, key, user, present=False)

    def _reaction_target(
        self, message: StoredMessage | int, emoji: str, user: FakeUser | None
    ) -> tuple[StoredMessage, str, FakeUser]:
        user = user or self.user
        stored = self.message(message if isinstance(message, int) else message.id)
        if stored.deleted or stored.ephemeral:
            raise ValueError(f"message {stored.id} is deleted or ephemeral; nobody can react to it")
        key = reaction_key(emoji)
        if key is None:
            raise ValueError(f"{emoji!r} is not an emoji (a unicode emoji, or name:id for a custom one)")
        channel = self.world.channel(stored.channel_id)
        if isinstance(channel, FakeDMChannel):
            if user.id not in (channel.recipient.id, self.bot_user.id):
                raise ValueError(
                    f"{user.username} cannot see the DMs between the bot and {channel.recipient.username}"
                )
        elif stored.guild_id is not None and user.id not in self.world.guilds[stored.guild_id].members:
            raise ValueError(f"{user.username} is not a member of the message's guild; call add_member first")
        return stored, key, user

    # --- knobs ---------------------------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int,
        *,
        count: int = 1,
        retry_after: float = 0.05,
        via: bool = True,
        code: int | None = None,
        message: str | None = None,
        is_global: bool = False,
        uploading: bool | None = None,
        after_handling: bool = False,
    ) -> FaultRule:
        """Answer the next `count` calls matching `route` ("METHOD /path/{template}" or "METHOD /glob/*")
        with `status`. A 429 carries `retry_after`, the X-RateLimit headers and, if `via`, the Via header.
        discord.py retries 429 (with Via) after `retry_after`, and 500/502/504 after 1 s, 3 s, ...
        (interaction callbacks and webhooks: every 5xx). `uploading` narrows the calls to those that
        upload files (True) or that do not (False), e.g. to fail a result's upload but not the edits
        before it. With `after_handling` Discord does the work first and only the answer is the failure,
        as when its edge times out (502/503/504) on a request its backend finished: a retry then finds
        the work done (a second message, or 40060 for an interaction already acknowledged)."""
        rule = FaultRule(
            route, status, count, retry_after, via, code, message, is_global, uploading, after_handling
        )
        self.rest.faults.append(rule)
        return rule

    def rate_limit(self, route: str, *, limit: int, per: float, send_headers: bool = True) -> RateLimitRule:
        """Limit calls matching `route` to `limit` per `per` seconds per channel (or guild, or token).
        With `send_headers` discord.py sees X-RateLimit-Remaining and waits by itself; without, it hits 429s."""
        rule = RateLimitRule(route, limit, per, send_headers)
        self.rest.rate_limits.append(rule)
        return rule

    def limit_channel_edits(
        self, *, limit: int = 5, per: float = 5.0, send_headers: bool = True
    ) -> RateLimitRule:
        """Discord's message edit limit: `limit` edits per `per` seconds per channel."""
        return self.rate_limit(EDIT_ROUTE, limit=limit, per=per, send_headers=send_headers)

    def clear_faults(self) -> None:
        """Drop every injected failure and rate limit."""
        self.rest.faults.clear()
        self.rest.rate_limits.clear()

    @property
    def upload_limit(self) -> int | None:
        """A per-file upload limit overriding the guilds' boost tier limits (None: by tier)."""
        return self.world.upload_limit

    @upload_limit.setter
    def upload_limit(self, value: int | None) -> None:
        self.world.upload_limit = value

    def advance_time(self, seconds: float) -> None:
        """Move the fake's clock: 3 s later the first response is late (10062), 15 min later tokens die."""
        self.clock.advance(seconds)

    def deny_intents(self, intents: int) -> None:
        """IDENTIFY asking for any of these intents is closed with 4014 (Disallowed intents)."""
        self.gateway.disallowed_intents = intents

    # --- recorded calls and stored messages ---------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every REST call so far, in order."""
        return self.rest.calls

    @property
    def unexpected_calls(self) -> list[RecordedCall]:
        """Calls no route of the fake served (answered 404/405)."""
        return [c for c in self.rest.calls if c.unexpected]

    def calls_to(self, route: str, *, since: int = 0) -> list[RecordedCall]:
        """Calls matching "METHOD /path/{template}" or "METHOD /glob/*"."""
        return [c for c in self.rest.calls[since:] if route_matches(route, c.method, c.route, c.path)]

    def mark(self) -> int:
        """The index the next call will get; pass it as `since` to only look at later calls."""
        return len(self.rest.calls)

    async def wait_for_call(
        self, match: str | Callable[[RecordedCall], bool], *, timeout: float = 5.0, since: int = 0
    ) -> RecordedCall:
        """The first call (from `since`) matching a route pattern or predicate, waiting for it if needed."""
        if isinstance(match, str):
            pattern = match

            def predicate(call: RecordedCall) -> bool:
                return route_matches(pattern, call.method, call.route, call.path)

        else:
            predicate = match
        return await self.rest.wait_for_call(predicate, timeout=timeout, since=since)

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Wait until `condition()` holds; it is re-checked after every REST call and gateway change."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(condition)
        except TimeoutError:
            raise TimeoutError(f"condition still false after {timeout}s") from None

    def message(self, message_id: int) -> StoredMessage:
        """A stored message by id (deleted ones too: check `.deleted`)."""
        try:
            return self.world.messages[message_id]
        except KeyError:
            raise KeyError(f"the bot never created message {message_id}") from None

    def messages_in(
        self, channel: FakeChannel | FakeDMChannel | None = None, *, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """Messages in a channel (default: the default channel), oldest first."""
        channel = channel or self.channel
        found = [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel.id and (include_deleted or not m.deleted)
        ]
        return sorted(found, key=lambda m: m.id)

    def latest_message(self, channel: FakeChannel | None = None) -> StoredMessage | None:
        """The newest message not deleted in a channel (default: the default channel)."""
        found = self.messages_in(channel)
        return found[-1] if found else None

    # --- gateway -----------------------------------------------------------------------------------------

    async def wait_until_ready(self, timeout: float = 10.0) -> GatewaySession:
        """Wait until a bot identified and got READY and every GUILD_CREATE."""
        try:
            return await self.gateway.wait_until_ready(timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no bot reached READY within {timeout}s; gateway connections: {self.gateway.connections}, "
                f"REST calls: {[f'{c.method} {c.path} -> {c.status}' for c in self.calls]}"
            ) from None

    async def dispatch(self, event: str, data: Any, *, intent: int | None = None) -> Delivery:
        """Send any gateway DISPATCH event (e.g. "INTERACTION_CREATE") to the bot's sessions whose shard holds
        the event's guild (events without a guild: shard 0); with `intent`, only to sessions that asked for it.
        Returns where it went."""
        return await self.gateway.dispatch(event, data, intent=intent)

    def dispatched(self, event: str) -> list[Any]:
        """The data of every `event` the gateway sent the bot(s), e.g. "MESSAGE_DELETE", oldest first."""
        return self.gateway.dispatched(event)

    async def _send_event(self, event: str, data: dict[str, Any], intent: int) -> None:
        await self.gateway.broadcast(event, data, intent=intent)
        async with self._changed:
            self._changed.notify_all()

    @property
    def gateway_frames(self) -> list[ReceivedFrame]:
        """Every payload bots sent to the gateway (IDENTIFY, RESUME, heartbeats, ...)."""
        return self.gateway.frames

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py RESUMEs on READY's resume_gateway_url."""
        await self.gateway.send_reconnect()

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the gateway connection(s) abruptly; with a 4000 code discord.py RESUMEs."""
        await self.gateway.drop_connections(code)

    async def wait_for_resume(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the bot RESUMEd `count` times."""
        await self.gateway.wait_for_resume(count, timeout)

    # --- shards --------------------------------------------------------------------------------------

    async def wait_until_shards_ready(
        self, shard_count: int, shard_ids: Iterable[int] | None = None, *, timeout: float = 10.0
    ) -> dict[int, GatewaySession]:
        """Wait until each of `shard_ids` (default: all of `shard_count`) has a connected session that
        IDENTIFYed as `[shard_id, shard_count]` and got READY and its GUILD_CREATEs (from any process)."""
        return await self.gateway.wait_until_shards_ready(shard_count, shard_ids, timeout=timeout)

    async def drop_shard(
        self, shard_id: int, shard_count: int | None = None, *, resumable: bool = False
    ) -> list[GatewaySession]:
        """Close shard `shard_id`'s connection, as when its process is killed: its session ends, its guilds'
        events reach nobody until a session IDENTIFYs for it again (discord.py in this process does so
        by itself: RESUME, INVALID_SESSION, then IDENTIFY after its `before_identify_hook`).
        With `resumable`, a network blip instead: discord.py RESUMEs and gets the missed events."""
        return await self.gateway.drop_shard(shard_id, shard_count, resumable=resumable)

    async def wait_until_shard_offline(
        self, shard_id: int, shard_count: int | None = None, *, timeout: float = 10.0
    ) -> None:
        """Wait until shard `shard_id` has no connected session (e.g. after killing the process that ran it)."""
        await self.gateway.wait_until_shard_offline(shard_id, shard_count, timeout=timeout)

    # --- interactions ----------------------------------------------------------------------------------

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch an APPLICATION_COMMAND interaction, as if `user` ran `/name` with `options`.

        `name` may hold subcommands ("queue list"). Option types come from the synced command when the
        bot synced it (and unknown or missing required options raise ValueError), else from the values:
        str, int, float, bool, FakeUser, FakeChannel, FakeRole, StoredAttachment (see `upload`)."""
        channel = channel or self.channel
        data = self._command_data(name, options or {}, channel, focused=None)
        return await self._interact(
            INTERACTION_APPLICATION_COMMAND, data, user=user, channel=channel, locale=locale
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
    ) -> InteractionHandle:
        """Dispatch an APPLICATION_COMMAND_AUTOCOMPLETE interaction; `focused` is the option being typed."""
        if focused not in options:
            raise ValueError(f"the focused option {focused!r} must be among the options {list(options)}")
        channel = channel or self.channel
        data = self._command_data(name, options, channel, focused=focused)
        return await self._interact(INTERACTION_AUTOCOMPLETE, data, user=user, channel=channel)

    async def click(
        self, message: StoredMessage | int, custom_id: str, *, user: FakeUser | None = None
    ) -> InteractionHandle:
        """Dispatch a MESSAGE_COMPONENT interaction: `user` presses the button `custom_id` on a stored message."""
        stored, component = self._component(message, custom_id)
        if component.get("type") != 2:
            raise ValueError(
                f"{custom_id!r} is not a button (component type {component.get('type')}); use select()"
            )
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(INTERACTION_MESSAGE_COMPONENT, data, user=user, message=stored)

    async def select(
        self,
        message: StoredMessage | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user: FakeUser | None = None,
    ) -> InteractionHandle:
        """Dispatch a MESSAGE_COMPONENT interaction: `user` picks `values` in the select menu `custom_id`."""
        stored, component = self._component(message, custom_id)
        kind = component.get("type")
        if kind not in (3, 5, 6, 7, 8):
            raise ValueError(f"{custom_id!r} is not a select menu (component type {kind})")
        if kind == 3:
            allowed = {o.get("value") for o in component.get("options", [])}
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{unknown} are not options of {custom_id!r}; it offers {sorted(allowed)}")
        data = {"custom_id": custom_id, "component_type": kind, "values": list(values)}
        return await self._interact(INTERACTION_MESSAGE_COMPONENT, data, user=user, message=stored)

    async def submit_modal(
        self, opened: InteractionHandle, values: Mapping[str, str | Sequence[str]] | None = None
    ) -> InteractionHandle:
        """Dispatch a MODAL_SUBMIT interaction: the user who got the modal `opened` answered with submits it.

        `values` maps a text input's custom_id to its text (a string select's to its chosen values); inputs
        left out keep the value the bot prefilled (empty if none). The data is what Discord sends:
        `{"custom_id", "components": [{"type": 1, "components": [{"type": 4, "custom_id", "value"}]}]}`
        (a Label, type 18, carries its input in `component`). A modal opened from a button carries that
        button's message, so the bot may answer by updating it. ValueError for what the Discord client
        prevents: an unknown input, a required input left empty, a text outside min/max_length, a second
        submission."""
        modal = opened.modal()
        if modal is None:
            raise ValueError(
                f"interaction {opened.id} was not answered with a modal (callback type {opened.callback_type})"
            )
        if opened.id in self._submitted_modals:
            raise ValueError(f"the modal of interaction {opened.id} was already submitted; Discord closed it")
        given = dict(values or {})
        used: set[str] = set()
        submitted: list[dict[str, Any]] = []
        for top in modal.get("components") or []:
            if top.get("type") == 1:
                children = [_submitted(c, given, used) for c in top.get("components") or []]
                row = [c for c in children if c is not None]
                if row:
                    submitted.append(_with_id(top, {"type": 1, "components": row}))
            elif top.get("type") == 18:
                child = _submitted(top.get("component") or {}, given, used)
                if child is not None:
                    submitted.append(_with_id(top, {"type": 18, "component": child}))
            elif top.get("type") == 10:  # a text display comes back as itself, without its content
                submitted.append(_with_id(top, {"type": 10}))
        unknown = sorted(set(given) - used)
        if unknown:
            raise ValueError(f"the modal {modal.get('custom_id')!r} has no input {unknown}")
        self._submitted_modals.add(opened.id)
        record = opened.record
        source = self.world.messages.get(record.source_message_id or 0)
        channel = self.world.channel(record.channel_id)
        if not isinstance(channel, FakeChannel):
            raise ValueError("the fake dispatches interactions in guild channels only")
        data = {"custom_id": modal["custom_id"], "components": submitted}
        return await self._interact(
            INTERACTION_MODAL_SUBMIT, data, user=record.user, channel=channel, message=source
        )

    def _component(
        self, message: StoredMessage | int, custom_id: str
    ) -> tuple[StoredMessage, dict[str, Any]]:
        stored = self.message(message if isinstance(message, int) else message.id)
        if stored.deleted:
            raise ValueError(f"message {stored.id} was deleted; nobody can use its components")
        component = stored.find_component(custom_id)
        if component is None:
            raise ValueError(
                f"message {stored.id} has no component {custom_id!r}; it has {stored.custom_ids()}"
            )
        if component.get("disabled"):
            raise ValueError(f"{custom_id!r} on message {stored.id} is disabled; a user cannot use it")
        return stored, component

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user: FakeUser | None,
        channel: FakeChannel | None = None,
        message: StoredMessage | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        world = self.world
        user = user or self.user
        if message is not None:
            found = world.channel(message.channel_id)
            if found is None:
                raise ValueError(f"message {message.id} is in unknown channel {message.channel_id}")
            if not isinstance(found, FakeChannel):
                raise ValueError("the fake dispatches interactions in guild channels only")
            channel = found
        assert channel is not None
        guild = world.guilds[channel.guild_id]
        member = guild.members.get(user.id)
        if member is None:
            raise ValueError(f"{user.username} is not a member of {guild.name}; call add_member first")
        permissions = guild.permissions_of(user.id)
        interaction_id = world.snowflake()
        raw_token = f"interaction:{interaction_id}:{secrets.token_hex(48)}".encode()
        token = base64.urlsafe_b64encode(raw_token).decode().rstrip("=")
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(world.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": list(guild.features)},
            "channel_id": str(channel.id),
            "channel": channel.payload() | {"permissions": str(permissions)},
            "member": member.payload(permissions=permissions),
            "token": token,
            "version": 1,
            "app_permissions": str(guild.permissions_of(world.bot_user.id)),
            "locale": locale,
            "guild_locale": guild.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": world.upload_limit_for(guild.id),
        }
        if message is not None:
            payload["message"] = message.payload()
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            created_at=self.clock.monotonic(),
            guild_id=guild.id,
            channel_id=channel.id,
            user=user,
            source_message_id=message.id if message is not None else None,
            response=asyncio.get_running_loop().create_future(),
        )
        world.interactions[interaction_id] = record
        world.interactions_by_token[token] = record
        # Only the shard that holds the guild gets it; with none, it is lost (the handle says so).
        delivery = await self.gateway.broadcast("INTERACTION_CREATE", payload)
        return InteractionHandle(self, record, delivery)

    def expire_interaction(self, interaction: InteractionHandle | str) -> None:
        """Expire an interaction token now (webhook calls then answer 401, code 50027)."""
        token = interaction if isinstance(interaction, str) else interaction.token
        self.world.interactions_by_token[token].expired = True

    # --- building command data ---------------------------------------------------------------------

    def synced_command(self, name: str, guild: FakeGuild | None = None) -> dict[str, Any] | None:
        """The slash command `name` as the bot last synced it (the guild's own first, then global)."""
        if guild is not None:
            found = self.world.guild_commands.get(guild.id, {}).get((name, 1))
            if found is not None:
                return found
        return self.world.global_commands.get((name, 1))

    def _command_data(
        self, name: str, options: Mapping[str, Any], channel: FakeChannel, *, focused: str | None
    ) -> dict[str, Any]:
        parts = name.strip().lstrip("/").split()
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"{name!r} is not a command name (at most a group and a subcommand)")
        guild = self.world.guilds[channel.guild_id]
        command = self.synced_command(parts[0], guild)
        definitions: list[dict[str, Any]] | None = command.get("options", []) if command else None
        resolved: dict[str, dict[str, Any]] = {}
        wrappers: list[dict[str, Any]] = []
        for depth, part in enumerate(parts[1:]):
            kind = OPTION_SUB_COMMAND if depth == len(parts) - 2 else OPTION_SUB_COMMAND_GROUP
            if definitions is not None:
                match = next((o for o in definitions if o["name"] == part and o.get("type") == kind), None)
                if match is None:
                    raise ValueError(f"/{' '.join(parts[: depth + 1])} has no subcommand {part!r}")
                definitions = match.get("options", [])
            wrappers.append({"name": part, "type": kind})
        leaf = self._options(parts, options, definitions, guild, resolved, focused)
        for wrapper in reversed(wrappers):
            wrapper["options"] = leaf
            leaf = [wrapper]
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self.world.snowflake()),
            "name": parts[0],
            "type": 1,
            "options": leaf,
        }
        if command is not None and "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    def _options(
        self,
        parts: list[str],
        values: Mapping[str, Any],
        definitions: list[dict[str, Any]] | None,
        guild: FakeGuild,
        resolved: dict[str, dict[str, Any]],
        focused: str | None,
    ) -> list[dict[str, Any]]:
        label = "/" + " ".join(parts)
        by_name = {o["name"]: o for o in definitions or []}
        if definitions is not None:
            unknown = [n for n in values if n not in by_name]
            if unknown:
                raise ValueError(f"{label} has no option {unknown}; it has {sorted(by_name)}")
            missing = [n for n, o in by_name.items() if o.get("required") and n not in values]
            if missing and focused is None:
                raise ValueError(f"{label} needs the required option(s) {missing}")
        result = []
        for option_name, value in values.items():
            definition = by_name.get(option_name, {})
            kind = definition.get("type") or _infer_option_type(value)
            if option_name == focused:
                result.append({"name": option_name, "type": kind, "value": str(value), "focused": True})
                continue
            if focused is None:
                _check_option(label, option_name, definition, value)
            result.append(
                {"name": option_name, "type": kind, "value": self._option_value(kind, value, guild, resolved)}
            )
        return result

    def _option_value(
        self, kind: int, value: Any, guild: FakeGuild, resolved: dict[str, dict[str, Any]]
    ) -> Any:
        if kind in (OPTION_USER, OPTION_MENTIONABLE) and isinstance(value, FakeUser | FakeMember):
            user = value if isinstance(value, FakeUser) else value.user
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            member = guild.members.get(user.id)
            if member is not None:
                permissions = guild.permissions_of(user.id)
                payload = member.payload(permissions=permissions, with_user=False)
                resolved.setdefault("members", {})[str(user.id)] = payload
            return str(user.id)
        if kind in (OPTION_ROLE, OPTION_MENTIONABLE) and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind == OPTION_CHANNEL and isinstance(value, FakeChannel):
            permissions = str(guild.permissions_of(self.bot_user.id))
            entry = {"id": str(value.id), "name": value.name, "type": value.type, "permissions": permissions}
            resolved.setdefault("channels", {})[str(value.id)] = entry | {"parent_id": None}
            return str(value.id)
        if kind == OPTION_ATTACHMENT and isinstance(value, StoredAttachment):
            resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind == OPTION_STRING:
            return str(value)
        if kind == OPTION_INTEGER:
            return int(value)
        if kind == OPTION_NUMBER:
            return float(value)
        if kind == OPTION_BOOLEAN:
            return bool(value)
        raise ValueError(f"cannot send {value!r} as an option of type {kind}")


@contextlib.contextmanager
def discord_py_pointed_at(http_base: str) -> Iterator[None]:
    """Point discord.py's REST (and interaction webhooks) and Gateway at a fake Discord listening on
    `http_base` (`http://127.0.0.1:PORT`), in this process; restore on exit."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = http_base + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        http_base.replace("http://", "ws://", 1) + "/"
    )
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


def _with_id(source: Mapping[str, Any], submitted: dict[str, Any]) -> dict[str, Any]:
    """Discord echoes a component's numeric `id` in the submission when the modal had one."""
    return {"id": source["id"], **submitted} if "id" in source else submitted


def _submitted(
    component: Mapping[str, Any], values: Mapping[str, str | Sequence[str]], used: set[str]
) -> dict[str, Any] | None:
    """One modal input as submitted: its custom_id with the user's value, checked like the Discord client."""
    kind, custom_id = component.get("type"), component.get("custom_id")
    if custom_id is None:
        return None  # text displays and other non-inputs are not submitted
    used.add(custom_id)
    if kind == 4:
        value = values.get(custom_id, component.get("value") or "")
        if not isinstance(value, str):
            raise ValueError(f"text input {custom_id!r} takes a string, not {value!r}")
        if component.get("required", True) and not value:
            raise ValueError(f"text input {custom_id!r} is required; the client will not submit it empty")
        low, high = component.get("min_length"), component.get("max_length")
        if value and ((low is not None and len(value) < low) or (high is not None and len(value) > high)):
            raise ValueError(
                f"text input {custom_id!r} takes {low or 0}-{high or 4000} characters, got {len(value)}"
            )
        return _with_id(component, {"type": 4, "custom_id": custom_id, "value": value})
    if kind == 3:
        chosen = values.get(custom_id, [])
        if isinstance(chosen, str):
            chosen = [chosen]
        allowed = {o.get("value") for o in component.get("options") or []}
        if set(chosen) - allowed:
            raise ValueError(f"{sorted(set(chosen) - allowed)} are not options of {custom_id!r}")
        low = component.get("min_values", 1)
        if component.get("required", True) and len(chosen) < low:
            raise ValueError(f"select {custom_id!r} needs at least {low} value(s)")
        return _with_id(component, {"type": 3, "custom_id": custom_id, "values": list(chosen)})
    raise ValueError(f"the fake cannot submit modal component type {kind} ({custom_id!r})")


def _infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return OPTION_BOOLEAN
    if isinstance(value, int):
        return OPTION_INTEGER
    if isinstance(value, float):
        return OPTION_NUMBER
    if isinstance(value, FakeUser | FakeMember):
        return OPTION_USER
    if isinstance(value, FakeChannel):
        return OPTION_CHANNEL
    if isinstance(value, FakeRole):
        return OPTION_ROLE
    if isinstance(value, StoredAttachment):
        return OPTION_ATTACHMENT
    return OPTION_STRING


def _check_option(label: str, name: str, definition: Mapping[str, Any], value: Any) -> None:
    """What the Discord client enforces before it sends a command: choices, lengths, ranges."""
    choices = definition.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(
            f"{label} {name}={value!r} is not one of its choices {[c['value'] for c in choices]}"
        )
    if isinstance(value, str):
        if "min_length" in definition and len(value) < definition["min_length"]:
            raise ValueError(f"{label} {name} must be at least {definition['min_length']} characters")
        if "max_length" in definition and len(value) > definition["max_length"]:
            raise ValueError(f"{label} {name} must be at most {definition['max_length']} characters")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if definition.get("min_value") is not None and value < definition["min_value"]:
            raise ValueError(f"{label} {name} must be at least {definition['min_value']}")
        if definition.get("max_value") is not None and value > definition["max_value"]:
            raise ValueError(f"{label} {name} must be at most {definition['max_value']}")
