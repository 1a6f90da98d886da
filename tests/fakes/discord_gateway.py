"""The fake Discord Gateway: HELLO, IDENTIFY/READY/GUILD_CREATE, heartbeats, RESUME, sharding, zstd/zlib."""

# Test helpers here take `timeout=` like asyncio.wait_for does; that reads better in tests.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from tests.fakes.discord_models import INTENT_GUILD_MEMBERS, FakeClock, FakeGuild, FakeUser, shard_of

log = logging.getLogger(__name__)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-close-event-codes).
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_SHARD = 4010
CLOSE_INVALID_API_VERSION = 4012
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014


class FrameEncoder(Protocol):
    """Turns one gateway payload into one WebSocket frame."""

    def encode(self, text: str) -> str | bytes:
        """Encode one payload."""
        ...


class PlainEncoder:
    """No transport compression: text frames."""

    def encode(self, text: str) -> str | bytes:
        """Send the JSON as a text frame."""
        return text


class ZlibStreamEncoder:
    """`compress=zlib-stream`: one zlib context per connection, every payload ends with Z_SYNC_FLUSH."""

    def __init__(self) -> None:
        self._context = zlib.compressobj()

    def encode(self, text: str) -> str | bytes:
        """Compress and flush, so the frame ends with 00 00 ff ff."""
        return self._context.compress(text.encode()) + self._context.flush(zlib.Z_SYNC_FLUSH)


class ZstdStreamEncoder:
    """`compress=zstd-stream`: one zstd frame per connection, every payload flushed as a block."""

    def __init__(self) -> None:
        import zstandard

        self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._context = zstandard.ZstdCompressor().compressobj()

    def encode(self, text: str) -> str | bytes:
        """Compress and flush the block so the client can decode the whole payload now."""
        return self._context.compress(text.encode()) + self._context.flush(self._flush_block)


def encoder_for(compress: str | None) -> FrameEncoder:
    """The encoder for the `compress` query parameter; ValueError for an unknown one."""
    if compress is None:
        return PlainEncoder()
    if compress == "zlib-stream":
        return ZlibStreamEncoder()
    if compress == "zstd-stream":
        return ZstdStreamEncoder()
    raise ValueError(f"unknown transport compression {compress!r}")


class GatewayWorld(Protocol):
    """What the gateway needs to know about the fake's world."""

    token: str
    application_id: int
    application_flags: int
    bot_user: FakeUser
    guilds: dict[int, FakeGuild]
    clock: FakeClock
    max_concurrency: int
    session_starts: int


# Each rate limit key (shard_id % max_concurrency) may IDENTIFY once per this many seconds.
IDENTIFY_WINDOW_S = 5.0


# Events about a guild object carry its id as `id`; every other guild event carries `guild_id`.
GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def event_guild_id(event: str, data: Any) -> int | None:
    """The guild an event is about (Discord routes it to that guild's shard), None for DMs and the like."""
    if not isinstance(data, dict):
        return None
    raw = data.get("guild_id")
    if raw is None and event in GUILD_OBJECT_EVENTS:
        raw = data.get("id")
    return None if raw is None else int(raw)


def _valid_shard(shard: Any) -> bool:
    """IDENTIFY's `shard` is `[shard_id, num_shards]` with 0 <= shard_id < num_shards."""
    if not isinstance(shard, list) or len(shard) != 2:
        return False
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in shard):
        return False
    shard_id, num_shards = shard
    return num_shards >= 1 and 0 <= shard_id < num_shards


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """One payload a client sent to the gateway."""

    connection: int
    op: int
    data: Any


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """How a client connected: path and query parameters."""

    number: int
    path: str
    version: str | None
    encoding: str | None
    compress: str | None


@dataclass(slots=True)
class _Connection:
    ws: web.WebSocketResponse
    session: GatewaySession | None = None
    client_close_code: int | None = None


@dataclass(slots=True)
class GatewaySession:
    """A gateway session: survives its connection until the client closes with 1000/1001 or it is invalidated."""

    id: str
    intents: int
    identify: dict[str, Any]
    shard: tuple[int, int] | None = None  # (shard_id, num_shards) from IDENTIFY; None: every guild
    seq: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    encoder: FrameEncoder | None = None
    alive: bool = True
    ready: bool = False
    resumes: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def connected(self) -> bool:
        """Whether the session has an open connection now (not between connections, not ended)."""
        return self.alive and self.ws is not None and not self.ws.closed

    def holds(self, guild_id: int | None) -> bool:
        """Whether Discord sends this session the events of `guild_id` (None: DMs and other events without
        a guild, which go to shard 0 only). A session without `shard` gets everything."""
        if self.shard is None:
            return True
        shard_id, num_shards = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, num_shards))

    def describe(self) -> str:
        """`session 1a2b3c4d (shard 1/2, connected)`, for test failure messages."""
        shard = "unsharded" if self.shard is None else f"shard {self.shard[0]}/{self.shard[1]}"
        state = "connected" if self.connected else "between connections" if self.alive else "ended"
        return f"session {self.id[:8]} ({shard}, {state})"

    async def send_raw(self, text: str) -> None:
        """Send one already-serialised payload on the current connection, if there is one."""
        async with self.send_lock:
            await self.send_locked(text)

    async def send_locked(self, text: str) -> None:
        """Send while holding `send_lock` (the encoder's stream state needs frames in order)."""
        ws, encoder = self.ws, self.encoder
        if ws is None or encoder is None or ws.closed:
            return
        frame = encoder.encode(text)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

    async def dispatch(self, event: str, data: Any) -> int:
        """Log and send one DISPATCH; it is replayed on RESUME if the connection is down."""
        async with self.send_lock:
            return await self.dispatch_locked(event, data)

    async def dispatch_locked(self, event: str, data: Any) -> int:
        """`dispatch` while holding `send_lock`: numbering, logging and sending happen as one step."""
        self.seq += 1
        text = json.dumps({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data})
        self.log.append((self.seq, text))
        await self.send_locked(text)
        return self.seq


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one DISPATCH went: `sent` to sessions with an open connection, `queued` for sessions between
    connections (replayed if they RESUME). Only sessions whose shard holds the event's guild get it."""

    event: str
    guild_id: int | None
    sent: tuple[GatewaySession, ...] = ()
    queued: tuple[GatewaySession, ...] = ()

    @property
    def delivered(self) -> bool:
        """Whether a connected session got the event now."""
        return bool(self.sent)

    @property
    def sessions(self) -> tuple[GatewaySession, ...]:
        """Every session that got the event, sent or queued."""
        return self.sent + self.queued


class GatewayServer:
    """Serves the gateway on `/` (and `/resume`, READY's `resume_gateway_url`)."""

    def __init__(
        self,
        world: GatewayWorld,
        *,
        changed: asyncio.Condition,
        ws_base: Callable[[], str],
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self._world = world
        self._ws_base = ws_base
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.disallowed_intents = 0
        # When set, an IDENTIFY within IDENTIFY_WINDOW_S (on the fake's clock) of the last one with the same
        # rate limit key gets INVALID_SESSION, as Discord answers bots that exceed max_concurrency.
        self.enforce_max_concurrency = False
        self.identify_refusals: list[tuple[int, int] | None] = []  # the `shard` of each refused IDENTIFY
        self._identified_at: dict[int, float] = {}
        self.sessions: dict[str, GatewaySession] = {}
        self.frames: list[ReceivedFrame] = []
        self.events: list[tuple[str, Any]] = []  # what dispatch/broadcast sent: (event name, data)
        self.connections: list[ConnectionInfo] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self.changed = changed

    def register(self, app: web.Application) -> None:
        """Add the gateway routes to the fake's aiohttp application."""
        app.router.add_get("/", self._handle)
        app.router.add_get("/resume", self._handle)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # --- public controls -------------------------------------------------------------------------------

    def live_sessions(self) -> list[GatewaySession]:
        """Sessions the bot has not ended (connected or waiting to RESUME); `.shard` says which shard."""
        return [s for s in self.sessions.values() if s.alive]

    def connected_sessions(self) -> list[GatewaySession]:
        """Live sessions with an open connection now."""
        return [s for s in self.live_sessions() if s.connected]

    def sessions_holding(self, guild_id: int | None) -> list[GatewaySession]:
        """Live sessions that get `guild_id`'s events (None: events without a guild, i.e. shard 0)."""
        return [s for s in self.live_sessions() if s.holds(guild_id)]

    async def dispatch(self, event: str, data: Any, *, intent: int | None = None) -> Delivery:
        """Send a DISPATCH to the live sessions whose shard holds the event's guild (`guild_id` in the data,
        or `id` for GUILD_CREATE/UPDATE/DELETE; events without a guild go to shard 0), queued for replay
        if a session is between connections. With `intent`, only sessions that IDENTIFYed with that intent
        bit get it, as on Discord. RuntimeError when no bot has a session at all."""
        if not self.live_sessions():
            raise RuntimeError(
                f"cannot dispatch {event}: no bot has an open gateway session (did it connect?)"
            )
        return await self.broadcast(event, data, intent=intent)

    async def broadcast(self, event: str, data: Any, *, intent: int | None = None) -> Delivery:
        """`dispatch` for events that REST calls or users cause: no session is no error."""
        guild_id = event_guild_id(event, data)
        sessions = [s for s in self.sessions_holding(guild_id) if intent is None or s.intents & intent]
        sent: list[GatewaySession] = []
        queued: list[GatewaySession] = []
        for session in sessions:
            (sent if session.connected else queued).append(session)
            await session.dispatch(event, data)
        if sessions:
            self.events.append((event, data))
        return Delivery(event, guild_id, tuple(sent), tuple(queued))

    def dispatched(self, event: str) -> list[Any]:
        """The data of every `event` that `dispatch`/`broadcast` sent to at least one session, oldest first
        (once each, however many sessions got it; READY and GUILD_CREATE are not listed)."""
        return [data for name, data in self.events if name == event]

    async def wait_until_ready(self, timeout: float = 10.0) -> GatewaySession:
        """Wait until a live session got READY and every GUILD_CREATE (and is connected)."""

        def ready() -> GatewaySession | None:
            # A socket the bot is closing still counts as attached until its handler ends: skip it.
            return next((s for s in self.live_sessions() if s.ready and s.connected), None)

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: ready() is not None)
        session = ready()
        assert session is not None
        return session

    def _ready_on_shard(self, shard_id: int, shard_count: int) -> GatewaySession | None:
        found = (
            s for s in self.live_sessions() if s.ready and s.connected and s.shard == (shard_id, shard_count)
        )
        return next(found, None)

    async def wait_until_shards_ready(
        self, shard_count: int, shard_ids: Iterable[int] | None = None, *, timeout: float = 10.0
    ) -> dict[int, GatewaySession]:
        """Wait until each of `shard_ids` (default: all `shard_count`) has a connected session that IDENTIFYed
        as `[shard_id, shard_count]` and got READY and its GUILD_CREATEs. Returns shard id -> session."""
        wanted = list(range(shard_count) if shard_ids is None else shard_ids)

        def missing() -> list[int]:
            return [i for i in wanted if self._ready_on_shard(i, shard_count) is None]

        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: not missing())
        except TimeoutError:
            seen = [s.describe() for s in self.live_sessions()] or "none"
            raise TimeoutError(
                f"shards {missing()} of {shard_count} not ready within {timeout}s; live sessions: {seen}"
            ) from None
        found = {i: self._ready_on_shard(i, shard_count) for i in wanted}
        return {i: s for i, s in found.items() if s is not None}

    def _on_shard(self, shard_id: int, shard_count: int | None) -> list[GatewaySession]:
        return [
            s
            for s in self.live_sessions()
            if s.shard is not None and s.shard[0] == shard_id and shard_count in (None, s.shard[1])
        ]

    async def wait_until_shard_offline(
        self, shard_id: int, shard_count: int | None = None, *, timeout: float = 10.0
    ) -> None:
        """Wait until no session IDENTIFYed as shard `shard_id` (of `shard_count`, if given) is connected,
        e.g. after killing the process that ran it."""

        def online() -> list[GatewaySession]:
            return [s for s in self._on_shard(shard_id, shard_count) if s.connected]

        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: not online())
        except TimeoutError:
            still = [s.describe() for s in online()]
            raise TimeoutError(f"shard {shard_id} still connected after {timeout}s: {still}") from None

    async def drop_shard(
        self, shard_id: int, shard_count: int | None = None, *, code: int = 4000, resumable: bool = False
    ) -> list[GatewaySession]:
        """Close the connection of every live session IDENTIFYed as shard `shard_id` (of `shard_count`).

        By default the sessions end too, as when the process that ran the shard is killed: nobody can
        RESUME them (a RESUME gets INVALID_SESSION) and the shard's events reach nobody until a session
        IDENTIFYs for it again. With `resumable`, it is a network blip: the bot RESUMEs and gets what it
        missed replayed. Returns the sessions; LookupError if the shard has none."""
        sessions = self._on_shard(shard_id, shard_count)
        if not sessions:
            seen = [s.describe() for s in self.live_sessions()] or "none"
            raise LookupError(f"no live session is on shard {shard_id}; live sessions: {seen}")
        for session in sessions:
            if not resumable:
                session.alive = False
        for session in sessions:
            ws = session.ws
            if ws is not None and not ws.closed:
                await ws.close(code=code, message=b"fake discord dropped the shard")
        await self._notify()
        return sessions

    async def wait_for_resume(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until live sessions have RESUMEd `count` times in total."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: sum(s.resumes for s in self.live_sessions()) >= count)

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs on `resume_gateway_url`."""
        for session in self.live_sessions():
            await session.send_raw(json.dumps({"op": OP_RECONNECT, "d": None}))

    async def invalidate_sessions(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION. Beware: discord.py waits 5 s before it IDENTIFYs again."""
        for session in self.live_sessions():
            if not resumable:
                session.alive = False
            await session.send_raw(json.dumps({"op": OP_INVALID_SESSION, "d": resumable}))

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every connection with `code`; sessions stay resumable unless the code ends them."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"fake discord dropped the connection")

    async def close(self) -> None:
        """Close every connection with 1001 Going Away (the fake is shutting down)."""
        for session in self.sessions.values():
            session.alive = False
        await self.drop_connections(code=1001)

    # --- the connection ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        info = ConnectionInfo(
            number=len(self.connections) + 1,
            path=request.path,
            version=request.query.get("v"),
            encoding=request.query.get("encoding"),
            compress=request.query.get("compress"),
        )
        self.connections.append(info)
        self._sockets.add(ws)
        state = _Connection(ws)
        try:
            await self._serve(state, info)
        finally:
            self._sockets.discard(ws)
            if state.session is not None:
                await self._detach(state)
        return ws

    async def _serve(self, state: _Connection, info: ConnectionInfo) -> None:
        ws = state.ws
        if info.version != "10":
            await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"Invalid API version")
            return
        if info.encoding not in (None, "json"):
            await ws.close(code=CLOSE_DECODE_ERROR, message=b"only encoding=json is supported")
            return
        try:
            encoder = encoder_for(info.compress)
        except (ValueError, ImportError) as exc:
            await ws.close(code=CLOSE_DECODE_ERROR, message=str(exc).encode())
            return

        hello = json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        await self._send_direct(ws, encoder, hello)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                state.client_close_code = msg.data
                break
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type is not WSMsgType.TEXT:
                await ws.close(code=CLOSE_DECODE_ERROR, message=b"send text frames")
                break
            try:
                payload = json.loads(msg.data)
                op = payload["op"]
            except (ValueError, KeyError, TypeError):
                await ws.close(code=CLOSE_DECODE_ERROR, message=b"Decode error")
                break
            data = payload.get("d")
            self.frames.append(ReceivedFrame(connection=info.number, op=op, data=data))
            if op == OP_HEARTBEAT:
                await self._send_direct(ws, encoder, json.dumps({"op": OP_HEARTBEAT_ACK}), state.session)
            elif op in (OP_IDENTIFY, OP_RESUME):
                if state.session is not None:
                    await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated")
                    break
                if op == OP_IDENTIFY:
                    state.session = await self._identify(ws, encoder, data)
                else:
                    state.session = await self._resume(ws, encoder, data)
                if ws.closed:
                    break
            elif op in (OP_PRESENCE_UPDATE, OP_VOICE_STATE_UPDATE, OP_REQUEST_GUILD_MEMBERS):
                if state.session is None:
                    await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated")
                    break
                if op == OP_REQUEST_GUILD_MEMBERS:
                    await self._send_member_chunk(state.session, data)
            else:
                await ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"Unknown opcode")
                break

    async def _send_direct(
        self,
        ws: web.WebSocketResponse,
        encoder: FrameEncoder,
        text: str,
        session: GatewaySession | None = None,
    ) -> None:
        if session is not None and session.ws is ws:
            await session.send_raw(text)
            return
        frame = encoder.encode(text)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

    async def _identify(
        self, ws: web.WebSocketResponse, encoder: FrameEncoder, data: Any
    ) -> GatewaySession | None:
        world = self._world
        if not isinstance(data, dict) or data.get("token") != world.token:
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s)")
            return None
        if intents & self.disallowed_intents:
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s)")
            return None

        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            await ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard")
            return None

        if not self._may_identify(shard):
            self.identify_refusals.append(None if shard is None else (shard[0], shard[1]))
            await self._send_direct(ws, encoder, json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            await self._notify()
            return None

        session = GatewaySession(
            id=secrets.token_hex(16),
            intents=intents,
            identify=data,
            shard=None if shard is None else (shard[0], shard[1]),
        )
        session.ws, session.encoder = ws, encoder
        world.session_starts += 1
        guilds = [g for g in list(world.guilds.values()) if session.holds(g.id)]
        user = world.bot_user.payload() | {"verified": True, "mfa_enabled": False, "flags": 0, "email": None}
        ready: dict[str, Any] = {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._ws_base() + "/resume",
            "application": {"id": str(world.application_id), "flags": world.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord-gateway"],
        }
        if shard is not None:
            ready["shard"] = shard
        all_members = bool(intents & INTENT_GUILD_MEMBERS)
        async with session.send_lock:
            await session.dispatch_locked("READY", ready)
            for guild in guilds:
                payload = guild.gateway_payload(bot_id=world.bot_user.id, all_members=all_members)
                await session.dispatch_locked("GUILD_CREATE", payload)
            # Only now can `dispatch` reach the session: nothing overtakes READY and the GUILD_CREATEs.
            session.ready = True
            self.sessions[session.id] = session
        log.debug("gateway session %s identified with intents %d, shard %s", session.id, intents, shard)
        await self._notify()
        return session

    def _may_identify(self, shard: list[int] | None) -> bool:
        """Whether this IDENTIFY fits in max_concurrency (always, unless `enforce_max_concurrency`)."""
        if not self.enforce_max_concurrency:
            return True
        key = (0 if shard is None else shard[0]) % self._world.max_concurrency
        now = self._world.clock.monotonic()
        last = self._identified_at.get(key)
        if last is not None and now - last < IDENTIFY_WINDOW_S:
            return False
        self._identified_at[key] = now
        return True

    async def _resume(
        self, ws: web.WebSocketResponse, encoder: FrameEncoder, data: Any
    ) -> GatewaySession | None:
        if not isinstance(data, dict) or data.get("token") != self._world.token:
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed")
            return None
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.alive:
            await self._send_direct(ws, encoder, json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return None
        last_seq = data.get("seq") or 0
        old_ws = session.ws
        if old_ws is not None and old_ws is not ws:
            await old_ws.close(code=4000, message=b"session resumed elsewhere")
        # Swap and replay under the lock, so a concurrent dispatch is either replayed or sent, never both.
        async with session.send_lock:
            session.ws, session.encoder = ws, encoder
            for seq, text in list(session.log):
                if seq > last_seq:
                    await session.send_locked(text)
            await session.dispatch_locked("RESUMED", {"_trace": ["fake-discord-gateway"]})
        session.resumes += 1
        log.debug("gateway session %s resumed after seq %s", session.id, last_seq)
        await self._notify()
        return session

    async def _send_member_chunk(self, session: GatewaySession, data: Any) -> None:
        if not isinstance(data, dict):
            return
        guild = self._world.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "").lower()
        members = [
            m
            for m in guild.members.values()
            if (not wanted or m.user.id in wanted) and m.user.username.lower().startswith(query)
        ]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in wanted - set(guild.members)],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def _detach(self, state: _Connection) -> None:
        session = state.session
        assert session is not None
        async with session.send_lock:
            if session.ws is not state.ws:
                return
            session.ws, session.encoder = None, None
        # A client that closes with 1000/1001 ends its session; any other way of closing keeps it resumable.
        if state.client_close_code in (1000, 1001):
            session.alive = False
        log.debug(
            "gateway session %s disconnected (client close code %s)", session.id, state.client_close_code
        )
        await self._notify()
