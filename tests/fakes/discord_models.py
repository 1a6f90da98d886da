"""State of the fake Discord: snowflakes, users, guilds, channels, messages, interactions and recorded calls."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 53) - 1
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)

# Gateway intents (https://discord.com/developers/docs/events/gateway#gateway-intents): which events a bot gets.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13

# Channel types.
CHANNEL_GUILD_TEXT = 0
CHANNEL_DM = 1

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

# Interaction types and callback types.
INTERACTION_PING = 1
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_MESSAGE_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
CALLBACK_PONG = 1
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE_MESSAGE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE_RESULT = 8
CALLBACK_MODAL = 9

# Per-file upload limit by boost tier, as discord.py's Guild._PREMIUM_GUILD_LIMITS has it.
FILESIZE_LIMIT_BY_TIER = {0: 10 * 1024 * 1024, 1: 10 * 1024 * 1024, 2: 50 * 1024 * 1024, 3: 100 * 1024 * 1024}

INTERACTION_TOKEN_LIFETIME = 15 * 60.0
INTERACTION_RESPONSE_DEADLINE = 3.0

UNMATCHED_ROUTE = "UNMATCHED"


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard whose session gets a guild's events: `(guild_id >> 22) % shard_count`, Discord's formula."""
    return (guild_id >> 22) % shard_count


def iso(timestamp: float) -> str:
    """Format a POSIX timestamp the way Discord does (ISO 8601, UTC, microseconds)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


class FakeClock:
    """The fake Discord's own time: real wall and monotonic time plus an offset that tests move forward
    instead of sleeping (token expiry, response deadlines, rate limit windows).

    Not tests.factories.FakeClock, which stands still until moved: the fake Discord runs beside a real
    discord.py client on real time, so its clock must keep flowing and only jump ahead.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        """Seconds since the epoch, shifted by the injected offset."""
        return time.time() + self.offset

    def monotonic(self) -> float:
        """Monotonic seconds, shifted by the injected offset."""
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move both clocks forward (token expiry, response deadlines, rate limit windows)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += seconds


class SnowflakeFactory:
    """Unique, increasing snowflakes whose timestamp part follows the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._last = 0
        self._increment = itertools.count()

    def __call__(self) -> int:
        """Return the next snowflake."""
        ms = int(self._clock.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._increment) & 0xFFF)
        value = max(value, self._last + 1)
        self._last = value
        return value

    def on_shard(self, shard_id: int, shard_count: int) -> int:
        """The next snowflake that, as a guild id, lands on `shard_id` of `shard_count` (`shard_of`).

        Its timestamp is at most `shard_count - 1` ms ahead; later snowflakes still increase."""
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"shard {shard_id} is outside 0..{shard_count - 1}")
        value = self()
        ms = value >> 22
        wanted = ms + (shard_id - ms) % shard_count
        if wanted != ms:
            value = (wanted << 22) | (1 << 17)
            self._last = value
        return value


@dataclass(slots=True)
class FakeUser:
    """A Discord user."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    discriminator: str = "0"
    locale: str = "en-US"
    dms_open: bool = True  # False: the bot's DMs to this user answer 403 (50007)

    def payload(self) -> dict[str, Any]:
        """The user object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": self.discriminator,
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(slots=True)
class FakeRole:
    """A guild role; `permissions` is the raw bit set."""

    id: int
    name: str
    permissions: int = 0
    position: int = 0

    def payload(self) -> dict[str, Any]:
        """The role object as Discord sends it."""
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass(slots=True)
class FakeChannel:
    """A guild text channel. `accessible=False` makes the bot's REST calls to it answer 403 Missing Access."""

    id: int
    guild_id: int
    name: str
    type: int = 0
    position: int = 0
    topic: str | None = None
    accessible: bool = True

    def payload(self, *, with_guild_id: bool = True) -> dict[str, Any]:
        """The channel object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "topic": self.topic,
            "nsfw": False,
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "permission_overwrites": [],
            "flags": 0,
        }
        if with_guild_id:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass(slots=True)
class FakeDMChannel:
    """The bot's direct-message channel with one user (created by `POST /users/@me/channels`)."""

    id: int
    recipient: FakeUser
    type: int = CHANNEL_DM
    accessible: bool = True

    @property
    def guild_id(self) -> None:
        """DM channels belong to no guild."""
        return None

    def payload(self) -> dict[str, Any]:
        """The channel object as Discord sends it."""
        return {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self.recipient.payload()],
        }


@dataclass(slots=True)
class FakeMember:
    """A user's membership of a guild."""

    user: FakeUser
    guild_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2024-01-01T00:00:00+00:00"

    def payload(self, *, permissions: int | None = None, with_user: bool = True) -> dict[str, Any]:
        """The guild member object; interactions add the member's resolved `permissions`."""
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(slots=True)
class FakeGuild:
    """A guild with its roles, channels and members. The @everyone role's id is the guild id."""

    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    features: list[str] = field(default_factory=list)
    locale: str = "en-US"
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)

    @property
    def filesize_limit(self) -> int:
        """The per-file upload limit in bytes for this guild's boost tier."""
        return FILESIZE_LIMIT_BY_TIER.get(self.premium_tier, FILESIZE_LIMIT_BY_TIER[0])

    def permissions_of(self, user_id: int) -> int:
        """Guild-level permissions of a member: owner and Administrator get everything."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        if member is None:
            return 0
        value = self.roles[self.id].permissions if self.id in self.roles else 0
        for role_id in member.role_ids:
            role = self.roles.get(role_id)
            if role is not None:
                value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def rest_payload(self) -> dict[str, Any]:
        """The guild object as `GET /guilds/{id}` returns it."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": list(self.features),
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(self.premium_tier, 0),
            "preferred_locale": self.locale,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
        }

    def gateway_payload(self, *, bot_id: int, all_members: bool) -> dict[str, Any]:
        """The GUILD_CREATE payload; without the members intent only the bot's own member is included."""
        data = self.rest_payload()
        members = [m for m in self.members.values() if all_members or m.user.id == bot_id]
        data.update(
            {
                "unavailable": False,
                "joined_at": "2024-01-01T00:00:00+00:00",
                "large": False,
                "member_count": len(self.members),
                "voice_states": [],
                "members": [m.payload() for m in members],
                "channels": [c.payload(with_guild_id=False) for c in self.channels.values()],
                "threads": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return data


@dataclass(slots=True)
class StoredAttachment:
    """An uploaded file as the fake stores and serves it."""

    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None
    ephemeral: bool = False
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        """The attachment object as Discord sends it."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        return data


def make_attachment(
    attachment_id: int, filename: str, data: bytes, url: str, content_type: str | None = None, **extra: Any
) -> StoredAttachment:
    """Build a stored attachment: its content type (guessed from the filename unless given) and, for
    images, its dimensions."""
    content_type = content_type or mimetypes.guess_type(filename)[0]
    width = height = None
    if content_type is not None and content_type.startswith("image/"):
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # not an image after all: Discord then omits width/height too
            log.debug("attachment %s is not a readable image", filename)
    return StoredAttachment(
        id=attachment_id,
        filename=filename,
        data=data,
        url=url,
        content_type=content_type,
        width=width,
        height=height,
        **extra,
    )


@dataclass(slots=True)
class StoredMessage:
    """A message the bot created; tests read its latest state, `history` holds every earlier payload."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    edited_at: float | None = None
    deleted: bool = False
    deleted_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # Who reacted with what: emoji as URLs spell it ("✉️", or "name:id" for a custom one) -> user ids, in order.
    reactions: dict[str, list[int]] = field(default_factory=dict)
    # Users Discord notified when the message was created: the `<@id>` in `content` that `allowed_mentions`
    # (as sent then) let through.
    mentions: list[FakeUser] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None

    @property
    def ephemeral(self) -> bool:
        """Whether only the invoking user sees it (reachable only through the interaction webhook)."""
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Whether it is still the "Bot is thinking..." placeholder of a deferred response."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def edit_count(self) -> int:
        """How many times it was edited."""
        return len(self.history)

    def iter_components(self) -> Iterator[dict[str, Any]]:
        """Every component, depth first, including those inside rows, sections and containers."""
        stack = list(reversed(self.components))
        while stack:
            component = stack.pop()
            yield component
            children = list(component.get("components", []))
            if "accessory" in component:
                children.append(component["accessory"])
            if "component" in component:
                children.append(component["component"])
            stack.extend(reversed(children))

    def custom_ids(self) -> list[str]:
        """The custom ids of all interactive components, in order."""
        return [c["custom_id"] for c in self.iter_components() if "custom_id" in c]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this custom id, if the message has it."""
        return next((c for c in self.iter_components() if c.get("custom_id") == custom_id), None)

    def reacted(self, emoji: str, user: FakeUser | int) -> bool:
        """Whether `user` has reacted to this message with `emoji` ("✉️", or "name:id")."""
        user_id = user if isinstance(user, int) else user.id
        return user_id in self.reactions.get(emoji, [])

    def payload(self, *, viewer_id: int | None = None) -> dict[str, Any]:
        """The message object as Discord sends it to `viewer_id` (default: the author, i.e. the bot)."""
        viewer = self.author.id if viewer_id is None else viewer_id
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": self.type,
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": None if self.edited_at is None else iso(self.edited_at),
            "tts": False,
            "mention_everyone": False,
            "mentions": [user.payload() for user in self.mentions],
            "mention_roles": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        reactions = [
            {
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": viewer in users,
                "me_burst": False,
                "emoji": emoji_payload(emoji),
                "burst_colors": [],
            }
            for emoji, users in self.reactions.items()
            if users
        ]
        if reactions:
            data["reactions"] = reactions
        return data


_CUSTOM_EMOJI = re.compile(r"^:?(?P<name>\w{2,32}):(?P<id>\d{1,21})$")


def reaction_key(emoji: str) -> str | None:
    """An emoji as reaction URLs spell it: a unicode emoji as is, a custom one as `name:id`
    (`<:name:id>` and `:name:id` are accepted); None when it is neither (Discord: 10014 Unknown Emoji)."""
    text = emoji.strip().strip("<>")
    custom = _CUSTOM_EMOJI.match(text)
    if custom is not None:
        return f"{custom['name']}:{custom['id']}"
    # Discord checks its list of unicode emoji; any short run of non-ASCII characters is close enough here.
    if text and len(text) <= 16 and not any(c.isspace() or c == ":" for c in text) and not text.isascii():
        return text
    return None


def emoji_payload(key: str) -> dict[str, Any]:
    """The partial emoji object of a reaction key: `{"id": None, "name": "✉️"}` or a custom emoji's id and name."""
    custom = _CUSTOM_EMOJI.match(key)
    if custom is None:
        return {"id": None, "name": key}
    return {"id": custom["id"], "name": custom["name"], "animated": False}


def reaction_event(
    message: StoredMessage, emoji: str, user: FakeUser, member: FakeMember | None, *, added: bool
) -> dict[str, Any]:
    """The MESSAGE_REACTION_ADD / _REMOVE payload for `user` reacting to `message` with `emoji`.

    Guild reactions carry `guild_id` (and, when added, the reacting `member`); additions also carry
    `message_author_id` and `burst_colors`, as on Discord."""
    data: dict[str, Any] = {
        "user_id": str(user.id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "emoji": emoji_payload(emoji),
        "burst": False,
        "type": 0,
    }
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    if added:
        data["message_author_id"] = str(message.author.id)
        data["burst_colors"] = []
        if member is not None:
            data["member"] = member.payload()
    return data


_USER_MENTION = re.compile(r"<@!?(\d{1,21})>")


def mentioned_users(
    content: str, allowed: dict[str, Any] | None, users: dict[int, FakeUser]
) -> list[FakeUser]:
    """The users a message notifies: `<@id>` in `content` (never phantom pings), filtered by `allowed_mentions`
    (absent: every user mention; else `parse` with "users", or the ids in `users`)."""
    found: list[FakeUser] = []
    for raw in _USER_MENTION.findall(content):
        user = users.get(int(raw))
        if user is None or user in found:
            continue
        if allowed is not None:
            listed = {str(u) for u in allowed.get("users") or []}
            if "users" not in (allowed.get("parse") or []) and str(user.id) not in listed:
                continue
        found.append(user)
    return found


def allowed_mentions_errors(allowed: Any) -> dict[str, Any]:
    """Discord refuses `parse: ["users"]` together with a `users` list (and the same for roles)."""
    if allowed is None:
        return {}
    if not isinstance(allowed, dict):
        return {"allowed_mentions": leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used.")}
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            message = f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'
            return {"allowed_mentions": leaf_error("MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", message)}
    if len(allowed.get("users") or []) > 100:
        return {"allowed_mentions": {"users": too_long(100)}}
    return {}


@dataclass(slots=True)
class InteractionRecord:
    """What the fake knows about one interaction it dispatched."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float
    guild_id: int | None
    channel_id: int
    user: FakeUser
    source_message_id: int | None = None
    callback_type: int | None = None
    original_message_id: int | None = None
    message_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None  # the modal the bot answered with (callback type 9), as sent
    expired: bool = False
    response: asyncio.Future[RecordedCall] | None = None


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """One file part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One REST call the fake received, with what it answered."""

    index: int
    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    form: dict[str, str]
    files: tuple[RecordedFile, ...]
    status: int
    response: Any
    response_headers: dict[str, str]
    at: float

    @property
    def payload(self) -> Any:
        """The JSON payload, whether it came as a JSON body or as multipart `payload_json`."""
        if self.json is not None:
            return self.json
        raw = self.form.get("payload_json")
        return None if raw is None else json.loads(raw)

    @property
    def ok(self) -> bool:
        """Whether the fake answered 2xx."""
        return 200 <= self.status < 300

    @property
    def unexpected(self) -> bool:
        """Whether no route of the fake matched (the fake answered 404 or 405)."""
        return self.route == UNMATCHED_ROUTE

    @property
    def callback_type(self) -> int | None:
        """The interaction callback type of an interaction callback call."""
        payload = self.payload
        return payload.get("type") if isinstance(payload, dict) else None

    def __repr__(self) -> str:
        return f"<RecordedCall #{self.index} {self.method} {self.path} -> {self.status}>"


@dataclass(slots=True)
class FakeWorld:
    """Everything the fake Discord knows; REST and Gateway read and change it."""

    token: str
    clock: FakeClock
    snowflake: SnowflakeFactory
    application_id: int
    bot_user: FakeUser
    owner: FakeUser
    application_flags: int = 1 << 23
    http_base: str = ""
    users: dict[int, FakeUser] = field(default_factory=dict)
    guilds: dict[int, FakeGuild] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    interactions: dict[int, InteractionRecord] = field(default_factory=dict)
    interactions_by_token: dict[str, InteractionRecord] = field(default_factory=dict)
    global_commands: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    guild_commands: dict[int, dict[tuple[str, int], dict[str, Any]]] = field(default_factory=dict)
    cdn: dict[int, StoredAttachment] = field(default_factory=dict)
    upload_limit: int | None = None
    dm_channels: dict[int, FakeDMChannel] = field(default_factory=dict)
    # GET /gateway/bot: the recommended shard count and the session start limit (IDENTIFYs use it up).
    recommended_shards: int = 1
    max_concurrency: int = 1
    session_start_total: int = 1000
    session_starts: int = 0

    def channel(self, channel_id: int) -> FakeChannel | FakeDMChannel | None:
        """The channel with this id in any guild, or the DM channel with this id."""
        for guild in self.guilds.values():
            channel = guild.channels.get(channel_id)
            if channel is not None:
                return channel
        return self.dm_channels.get(channel_id)

    def dm_channel_with(self, user: FakeUser) -> FakeDMChannel:
        """The bot's DM channel with `user`, created on first use (Discord returns the same one every time)."""
        for channel in self.dm_channels.values():
            if channel.recipient.id == user.id:
                return channel
        channel = FakeDMChannel(self.snowflake(), user)
        self.dm_channels[channel.id] = channel
        return channel

    def upload_limit_for(self, guild_id: int | None) -> int:
        """The per-file upload limit: the injected one, else the guild's boost tier limit."""
        if self.upload_limit is not None:
            return self.upload_limit
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        return guild.filesize_limit if guild is not None else FILESIZE_LIMIT_BY_TIER[0]

    def attachment_url(self, channel_id: int, attachment_id: int, filename: str) -> str:
        """Where the fake's CDN serves an attachment."""
        return f"{self.http_base}/attachments/{channel_id}/{attachment_id}/{filename}"

    def new_attachment(self, channel_id: int, filename: str, data: bytes, **extra: Any) -> StoredAttachment:
        """Store bytes on the fake CDN and describe them as an attachment."""
        attachment_id = self.snowflake()
        url = self.attachment_url(channel_id, attachment_id, filename)
        attachment = make_attachment(attachment_id, filename, data, url, **extra)
        self.cdn[attachment_id] = attachment
        return attachment


# --- what Discord validates in request bodies: each function returns a Discord `errors` tree, empty if valid

V2_LEGACY_MESSAGE = "The 'content' and 'embeds' fields cannot be used when using IS_COMPONENTS_V2."


def leaf_error(code: str, message: str) -> dict[str, Any]:
    """One error at a leaf of Discord's form error tree."""
    return {"_errors": [{"code": code, "message": message}]}


def too_long(limit: int) -> dict[str, Any]:
    """The error for a value or list over `limit`."""
    return leaf_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def bad_length(low: int, high: int) -> dict[str, Any]:
    """The error for a length outside `low`..`high`."""
    return leaf_error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def text_len(value: Any) -> int:
    """Length of a string, 0 for anything else."""
    return len(value) if isinstance(value, str) else 0


def embed_errors(embeds: Any) -> dict[str, Any]:
    """Discord's embed limits: 10 embeds, field counts and lengths, 6000 characters in total."""
    if not isinstance(embeds, list):
        return leaf_error("LIST_TYPE_CONVERT", "Only iterables may be used.")
    if len(embeds) > 10:
        return too_long(10)
    errors: dict[str, Any] = {}
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            errors[str(index)] = leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used.")
            continue
        found: dict[str, Any] = {}
        limits = {"title": 256, "description": 4096}
        for key, limit in limits.items():
            if text_len(embed.get(key)) > limit:
                found[key] = too_long(limit)
            total += text_len(embed.get(key))
        footer = embed.get("footer") or {}
        author = embed.get("author") or {}
        if text_len(footer.get("text")) > 2048:
            found["footer"] = {"text": too_long(2048)}
        if text_len(author.get("name")) > 256:
            found["author"] = {"name": too_long(256)}
        total += text_len(footer.get("text")) + text_len(author.get("name"))
        fields = embed.get("fields") or []
        if len(fields) > 25:
            found["fields"] = too_long(25)
        for position, entry in enumerate(fields[:25]):
            name, value = (entry.get("name"), entry.get("value")) if isinstance(entry, dict) else (None, None)
            problem: dict[str, Any] = {}
            if not isinstance(name, str) or not name:
                problem["name"] = leaf_error("BASE_TYPE_REQUIRED", "This field is required")
            elif len(name) > 256:
                problem["name"] = too_long(256)
            if not isinstance(value, str) or not value:
                problem["value"] = leaf_error("BASE_TYPE_REQUIRED", "This field is required")
            elif len(value) > 1024:
                problem["value"] = too_long(1024)
            if problem:
                found.setdefault("fields", {})[str(position)] = problem
            total += text_len(name) + text_len(value)
        if found:
            errors[str(index)] = found
    if not errors and total > 6000:
        return leaf_error("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    return errors


def _component_errors(component: Any, seen: set[str], counter: list[int], *, v2: bool) -> dict[str, Any]:
    if not isinstance(component, dict) or not isinstance(component.get("type"), int):
        return leaf_error("BASE_TYPE_REQUIRED", "This field is required")
    counter[0] += 1
    found: dict[str, Any] = {}
    kind = component["type"]
    custom_id = component.get("custom_id")
    if custom_id is not None:
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
            found["custom_id"] = bad_length(1, 100)
        elif custom_id in seen:
            found["custom_id"] = leaf_error(
                "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
            )
        else:
            seen.add(custom_id)
    children = component.get("components") or []
    if kind == 1:
        if not 1 <= len(children) <= 5:
            found["components"] = bad_length(1, 5)
        elif len(children) > 1 and any(
            isinstance(c, dict) and c.get("type") in SELECT_TYPES for c in children
        ):
            found["components"] = leaf_error(
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "A select menu fills a whole row"
            )
    elif kind == 2:
        style = component.get("style")
        if text_len(component.get("label")) > 80:
            found["label"] = too_long(80)
        if style == 5 and (not component.get("url") or custom_id is not None):
            found["url"] = leaf_error(
                "BUTTON_COMPONENT_URL_REQUIRED", "A link button needs a url and no custom_id"
            )
        elif style in (1, 2, 3, 4) and custom_id is None:
            found["custom_id"] = leaf_error("BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required")
    elif kind in SELECT_TYPES:
        if custom_id is None:
            found["custom_id"] = leaf_error("BASE_TYPE_REQUIRED", "This field is required")
        if text_len(component.get("placeholder")) > 150:
            found["placeholder"] = too_long(150)
        if kind == 3 and not 1 <= len(component.get("options") or []) <= 25:
            found["options"] = bad_length(1, 25)
    nested = {
        str(i): e for i, child in enumerate(children) if (e := _component_errors(child, seen, counter, v2=v2))
    }
    if nested and "components" not in found:
        found["components"] = nested
    accessory = component.get("accessory")
    if accessory is not None and (e := _component_errors(accessory, seen, counter, v2=v2)):
        found["accessory"] = e
    return found


def components_errors(components: list[Any], *, v2: bool) -> dict[str, Any]:
    """Discord's component rules: at most 5 rows of at most 5 buttons or one select (or 40 components
    with IS_COMPONENTS_V2), custom ids unique and 1-100 characters."""
    if not v2 and len(components) > 5:
        return {"components": too_long(5)}
    seen: set[str] = set()
    counter = [0]
    found: dict[str, Any] = {}
    for index, top in enumerate(components):
        problem = _component_errors(top, seen, counter, v2=v2)
        if not v2 and isinstance(top, dict) and top.get("type") != 1:
            problem["type"] = leaf_error("UNION_TYPE_CHOICES", "Top-level components must be action rows")
        if problem:
            found[str(index)] = problem
    if v2 and counter[0] > 40:
        return {"components": leaf_error("BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer components in total.")}
    return {"components": found} if found else {}


def message_form_errors(payload: dict[str, Any]) -> dict[str, Any]:
    """Form errors for a message create/edit body (the fields it has)."""
    errors: dict[str, Any] = {}
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errors["content"] = leaf_error("STRING_TYPE_CONVERT", "Could not interpret value as string.")
    elif isinstance(content, str) and len(content) > 2000:
        errors["content"] = too_long(2000)
    if payload.get("embeds") is not None:
        found = embed_errors(payload["embeds"])
        if found:
            errors["embeds"] = found
    if payload.get("components") is not None and not isinstance(payload["components"], list):
        errors["components"] = leaf_error("LIST_TYPE_CONVERT", "Only iterables may be used.")
    return errors


def choices_errors(choices: Any) -> dict[str, Any]:
    """Autocomplete results: at most 25 choices, names 1-100 characters, string values up to 100."""
    if not isinstance(choices, list):
        return {"choices": leaf_error("BASE_TYPE_REQUIRED", "This field is required")}
    if len(choices) > 25:
        return {"choices": too_long(25)}
    errors: dict[str, Any] = {}
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            errors[str(index)] = leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used.")
            continue
        found: dict[str, Any] = {}
        if not 1 <= text_len(choice.get("name")) <= 100:
            found["name"] = bad_length(1, 100)
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            found["value"] = too_long(100)
        if found:
            errors[str(index)] = found
    return {"choices": errors} if errors else {}


def modal_errors(data: dict[str, Any]) -> dict[str, Any]:
    """A modal needs a custom id (1-100), a title (1-45) and 1-5 components."""
    errors: dict[str, Any] = {}
    if not 1 <= text_len(data.get("custom_id")) <= 100:
        errors["custom_id"] = bad_length(1, 100)
    if not 1 <= text_len(data.get("title")) <= 45:
        errors["title"] = bad_length(1, 45)
    if not 1 <= len(data.get("components") or []) <= 5:
        errors["components"] = bad_length(1, 5)
    return errors


SELECT_TYPES = (3, 5, 6, 7, 8)
_NAME = re.compile(r"^[-_'\w]{1,32}$")


def _option_errors(options: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    if len(options) > 25:
        return too_long(25)
    optional_seen = False
    names: set[str] = set()
    for index, option in enumerate(options):
        found: dict[str, Any] = {}
        name = option.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name != name.lower():
            found["name"] = leaf_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif name in names:
            found["name"] = leaf_error(
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"
            )
        else:
            names.add(name)
        if not 1 <= text_len(option.get("description")) <= 100:
            found["description"] = bad_length(1, 100)
        kind = option.get("type")
        if kind in (1, 2):
            nested = _option_errors(option.get("options") or [])
            if nested:
                found["options"] = nested
        elif option.get("required"):
            if optional_seen:
                found["required"] = leaf_error(
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > 25:
            found["choices"] = too_long(25)
        elif choices:
            nested = choices_errors(choices)
            if nested:
                found.update(nested)
        if found:
            errors[str(index)] = found
    return errors


def commands_errors(commands: list[Any]) -> dict[str, Any]:
    """Form errors for a bulk command overwrite: names, descriptions, options, duplicates, 100 slash commands."""
    errors: dict[str, Any] = {}
    seen: set[tuple[str, int]] = set()
    if sum(1 for c in commands if isinstance(c, dict) and c.get("type", 1) == 1) > 100:
        return too_long(100)
    for index, command in enumerate(commands):
        if not isinstance(command, dict):
            errors[str(index)] = leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used.")
            continue
        found: dict[str, Any] = {}
        kind = command.get("type", 1)
        name = command.get("name")
        description = command.get("description", "")
        if kind == 1:
            if not isinstance(name, str) or not _NAME.match(name) or name != name.lower():
                found["name"] = leaf_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if not 1 <= text_len(description) <= 100:
                found["description"] = bad_length(1, 100)
            options = _option_errors(command.get("options") or [])
            if options:
                found["options"] = options
        else:
            if not 1 <= text_len(name) <= 32:
                found["name"] = bad_length(1, 32)
            if description:
                found["description"] = leaf_error("APPLICATION_COMMAND_DESCRIPTION_INVALID", "Must be empty")
        if isinstance(name, str):
            if (name, kind) in seen:
                found["name"] = leaf_error(
                    "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
                )
            seen.add((name, kind))
        if found:
            errors[str(index)] = found
    return errors
