"""The fake Discord REST API: every call recorded, Discord-shaped errors, injected faults and rate limits."""

# Test helpers here take `timeout=` like asyncio.wait_for does; that reads better in tests.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from tests.fakes.discord_models import (
    ADD_REACTIONS,
    CALLBACK_AUTOCOMPLETE_RESULT,
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_UPDATE_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_PONG,
    CALLBACK_UPDATE_MESSAGE,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTERACTION_APPLICATION_COMMAND,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_MESSAGE_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
    INTERACTION_PING,
    INTERACTION_RESPONSE_DEADLINE,
    INTERACTION_TOKEN_LIFETIME,
    MANAGE_MESSAGES,
    UNMATCHED_ROUTE,
    V2_LEGACY_MESSAGE,
    FakeChannel,
    FakeDMChannel,
    FakeUser,
    FakeWorld,
    InteractionRecord,
    RecordedCall,
    RecordedFile,
    StoredAttachment,
    StoredMessage,
    allowed_mentions_errors,
    choices_errors,
    commands_errors,
    components_errors,
    emoji_payload,
    leaf_error,
    mentioned_users,
    message_form_errors,
    modal_errors,
    reaction_event,
    reaction_key,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# Route keys as `RecordedCall.route` spells them; usable as patterns for calls_to, fail_next, rate_limit.
CALLBACK_ROUTE = "POST /interactions/{interaction_id}/{interaction_token}/callback"
FOLLOWUP_ROUTE = "POST /webhooks/{application_id}/{interaction_token}"
EDIT_ORIGINAL_ROUTE = "PATCH /webhooks/{application_id}/{interaction_token}/messages/@original"
SEND_ROUTE = "POST /channels/{channel_id}/messages"
EDIT_ROUTE = "PATCH /channels/{channel_id}/messages/{message_id}"
DELETE_ROUTE = "DELETE /channels/{channel_id}/messages/{message_id}"
CREATE_DM_ROUTE = "POST /users/@me/channels"
ADD_REACTION_ROUTE = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
REMOVE_OWN_REACTION_ROUTE = "DELETE /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
# discord.py retries these by itself, so they are never a final answer.
RETRIED_STATUSES = frozenset({429, 500, 502, 504, 524})


def retried_by_discord_py(route: str, status: int) -> bool:
    """Whether discord.py answers `status` by retrying: its HTTP client retries 429 and 500/502/504/524,
    its webhook adapter (interaction callbacks, followups) 429 and every 5xx (503 too)."""
    webhook = route == CALLBACK_ROUTE or route.partition(" ")[2].startswith("/webhooks/")
    return status in RETRIED_STATUSES or (webhook and status >= 500)


HEADERS_OF_INTEREST = ("Authorization", "Content-Type", "User-Agent", "X-Audit-Log-Reason")

# Which callback types Discord accepts for which interaction type.
ALLOWED_CALLBACKS = {
    INTERACTION_PING: {CALLBACK_PONG},
    INTERACTION_APPLICATION_COMMAND: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_MODAL,
    },
    INTERACTION_MESSAGE_COMPONENT: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_UPDATE_MESSAGE,
        CALLBACK_UPDATE_MESSAGE,
        CALLBACK_MODAL,
    },
    INTERACTION_AUTOCOMPLETE: {CALLBACK_AUTOCOMPLETE_RESULT},
    INTERACTION_MODAL_SUBMIT: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_UPDATE_MESSAGE,
        CALLBACK_UPDATE_MESSAGE,
    },
}


class ApiError(Exception):
    """A Discord error answer: HTTP status, JSON error code, message and optional form errors."""

    def __init__(self, status: int, code: int, message: str, *, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends."""
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def form_error(errors: dict[str, Any]) -> ApiError:
    """400 Invalid Form Body with Discord's nested `errors` tree."""
    return ApiError(400, 50035, "Invalid Form Body", errors=errors)


@dataclass(slots=True)
class Reply:
    """What a handler answers; `text` is for non-JSON bodies such as a proxy's HTML error page."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None


@dataclass(slots=True)
class IncomingCall:
    """A parsed request, handed to the route handler."""

    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    form: dict[str, str]
    files: tuple[RecordedFile, ...]

    @property
    def payload(self) -> Any:
        """The JSON body, or the multipart `payload_json`."""
        if self.json is not None:
            return self.json
        raw = self.form.get("payload_json")
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None


@dataclass(slots=True)
class FaultRule:
    """Answer the next `remaining` calls matching `pattern` with an injected failure."""

    pattern: str
    status: int
    remaining: int
    retry_after: float = 0.05
    via: bool = True
    code: int | None = None
    message: str | None = None
    is_global: bool = False
    uploading: bool | None = None  # only calls that upload files (True), or that do not (False)
    after_handling: bool = False  # Discord acts on the call, then answers with the failure

    def applies(self, call: IncomingCall) -> bool:
        """Whether this rule still fails calls and `call` is one of them."""
        if self.remaining <= 0 or not route_matches(self.pattern, call.method, call.route, call.path):
            return False
        return self.uploading is None or bool(call.files) == self.uploading


@dataclass(slots=True)
class RateLimitRule:
    """A fixed-window limit of `limit` calls per `per` seconds, one window per major parameter."""

    pattern: str
    limit: int
    per: float
    send_headers: bool = True
    bucket: str = field(default_factory=lambda: secrets.token_hex(16))
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)


def route_matches(pattern: str, method: str, route: str, path: str) -> bool:
    """Whether "METHOD PATH" matches a call; PATH is a route template or a glob over the concrete path."""
    pattern_method, _, pattern_path = pattern.strip().partition(" ")
    if not fnmatch.fnmatchcase(method.upper(), pattern_method.upper()):
        return False
    template = route.partition(" ")[2]
    return pattern_path == template or fnmatch.fnmatchcase(path, pattern_path)


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


Handler = Callable[[IncomingCall], Awaitable[Reply]]
# Sends a gateway event caused by a REST call (a deleted message, the bot's own reaction) to the
# sessions whose intents include `intent`; FakeDiscord wires it to the gateway.
EventSink = Callable[[str, dict[str, Any], int], Awaitable[object]]


async def _no_gateway(event: str, data: dict[str, Any], intent: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    auth: bool


class RestApi:
    """Serves `/api/v10/...` and the attachment CDN; records every call in `calls`."""

    def __init__(self, world: FakeWorld, *, changed: asyncio.Condition) -> None:
        self._world = world
        self.changed = changed
        self.calls: list[RecordedCall] = []
        self.faults: list[FaultRule] = []
        self.rate_limits: list[RateLimitRule] = []
        self.interaction_deadline = INTERACTION_RESPONSE_DEADLINE
        self.send_event: EventSink = _no_gateway
        self._routes: list[_Route] = []
        self._add_routes()

    def register(self, app: web.Application) -> None:
        """Add the REST and CDN routes to the fake's aiohttp application."""
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._entry)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)

    # --- waiting ---------------------------------------------------------------------------------------

    async def wait_for_call(
        self, predicate: Callable[[RecordedCall], bool], *, timeout: float = 5.0, since: int = 0
    ) -> RecordedCall:
        """The first call from index `since` on that matches, waiting for it if it has not come yet."""

        def find() -> RecordedCall | None:
            return next((c for c in self.calls[since:] if predicate(c)), None)

        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: find() is not None)
        except TimeoutError:
            seen = ", ".join(f"{c.method} {c.path} -> {c.status}" for c in self.calls[since:]) or "none"
            raise TimeoutError(
                f"no matching REST call within {timeout}s; calls since #{since}: {seen}"
            ) from None
        found = find()
        assert found is not None
        return found

    # --- routing -----------------------------------------------------------------------------------------

    def _route(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        self._routes.append(_Route(method, template, _compile(template), handler, auth))

    def _add_routes(self) -> None:
        r = self._route
        r("GET", "/users/@me", self._get_me)
        r("POST", "/users/@me/channels", self._create_dm)
        r("GET", "/users/{user_id}", self._get_user)
        r("GET", "/oauth2/applications/@me", self._get_application)
        r("GET", "/applications/@me", self._get_application)
        r("GET", "/gateway", self._get_gateway, auth=False)
        r("GET", "/gateway/bot", self._get_gateway_bot)
        r("GET", "/channels/{channel_id}", self._get_channel)
        r("GET", "/channels/{channel_id}/messages", self._list_messages)
        r("POST", "/channels/{channel_id}/messages", self._create_message)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        reactions = "/channels/{channel_id}/messages/{message_id}/reactions"
        r("PUT", reactions + "/{emoji}/@me", self._add_own_reaction)
        r("DELETE", reactions + "/{emoji}/@me", self._remove_own_reaction)
        r("DELETE", reactions + "/{emoji}/{user_id}", self._remove_user_reaction)
        r("GET", reactions + "/{emoji}", self._list_reaction_users)
        r("DELETE", reactions + "/{emoji}", self._clear_reactions)
        r("DELETE", reactions, self._clear_reactions)
        r("POST", "/channels/{channel_id}/typing", self._typing)
        r("GET", "/guilds/{guild_id}", self._get_guild)
        r("GET", "/guilds/{guild_id}/channels", self._get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self._get_guild_roles)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)
        r("GET", "/applications/{application_id}/commands", self._get_commands)
        r("PUT", "/applications/{application_id}/commands", self._put_commands)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands)
        r("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands)
        r("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback, auth=False)
        r("POST", "/webhooks/{application_id}/{interaction_token}", self._followup, auth=False)
        for method, handler in (
            ("GET", self._get_hook),
            ("PATCH", self._edit_hook),
            ("DELETE", self._del_hook),
        ):
            r(
                method,
                "/webhooks/{application_id}/{interaction_token}/messages/@original",
                handler,
                auth=False,
            )
            r(
                method,
                "/webhooks/{application_id}/{interaction_token}/messages/{message_id}",
                handler,
                auth=False,
            )

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
        path_matched = False
        for route in self._routes:
            found = route.regex.match(path)
            if found is None:
                continue
            path_matched = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_matched

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :] or "/"
        method = request.method.upper()
        route, params, path_matched = self._match(method, path)
        template = f"{method} {route.template}" if route else UNMATCHED_ROUTE
        try:
            call = await self._parse(request, method, path, template, params)
        except ApiError as exc:
            call = IncomingCall(method, path, template, params, dict(request.query), {}, None, {}, ())
            return await self._finish(call, Reply(exc.status, exc.body()))
        fault = self._injected_fault(call)
        reply = None
        if fault is not None:
            if fault.after_handling:
                await self._handle(call, route, path_matched)  # Discord acted; only its answer is lost
            reply = self._fault_reply(fault)
        limit_headers: dict[str, str] = {}
        if reply is None:
            reply, limit_headers = self._rate_limited(call)
        if reply is None:
            reply = await self._handle(call, route, path_matched)
        reply.headers.update(limit_headers)
        return await self._finish(call, reply)

    async def _handle(self, call: IncomingCall, route: _Route | None, path_matched: bool) -> Reply:
        if route is None:
            if path_matched:
                return Reply(405, {"message": "405: Method Not Allowed", "code": 0})
            log.warning("fake discord: unexpected %s %s", call.method, call.path)
            return Reply(404, {"message": "404: Not Found", "code": 0})
        if route.auth and call.headers.get("Authorization") != f"Bot {self._world.token}":
            return Reply(401, {"message": "401: Unauthorized", "code": 0})
        try:
            return await route.handler(call)
        except ApiError as exc:
            return Reply(exc.status, exc.body())
        except Exception as exc:
            # A 400, not a 500: discord.py would retry a 500 for ~25 s before the test saw anything.
            log.exception("fake discord failed on %s %s", call.method, call.path)
            return Reply(
                400, {"message": f"the fake Discord could not handle this request: {exc!r}", "code": 0}
            )

    async def _parse(
        self, request: web.Request, method: str, path: str, route: str, params: dict[str, str]
    ) -> IncomingCall:
        headers = {k: request.headers[k] for k in HEADERS_OF_INTEREST if k in request.headers}
        body: Any = None
        form: dict[str, str] = {}
        files: list[RecordedFile] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: Discord does not use it
                data = bytes(await part.read(decode=False))
                if part.filename is None:
                    form[part.name or ""] = data.decode()
                else:
                    content_type = part.headers.get(hdrs.CONTENT_TYPE)
                    files.append(RecordedFile(part.name or "", part.filename, content_type, data))
        elif request.can_read_body:
            raw = await request.read()
            if raw and request.content_type == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            elif raw:
                form["_raw"] = raw.decode(errors="replace")
        return IncomingCall(
            method, path, route, params, dict(request.query), headers, body, form, tuple(files)
        )

    async def _finish(self, call: IncomingCall, reply: Reply) -> web.StreamResponse:
        headers = dict(reply.headers)
        if reply.text is not None:
            headers.setdefault("Content-Type", "text/html")
        elif reply.body is not None:
            # discord.py parses JSON only when Content-Type is exactly application/json (no charset).
            headers["Content-Type"] = "application/json"
        recorded = RecordedCall(
            index=len(self.calls),
            method=call.method,
            path=call.path,
            route=call.route,
            params=call.params,
            query=call.query,
            headers=call.headers,
            json=call.json,
            form=call.form,
            files=call.files,
            status=reply.status,
            response=reply.text if reply.text is not None else reply.body,
            response_headers=headers,
            at=self._world.clock.time(),
        )
        self.calls.append(recorded)
        if call.route == CALLBACK_ROUTE and not retried_by_discord_py(call.route, reply.status):
            self._resolve_callback(recorded)
        async with self.changed:
            self.changed.notify_all()
        if reply.text is not None:
            return web.Response(status=reply.status, body=reply.text.encode(), headers=headers)
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)

    def _resolve_callback(self, recorded: RecordedCall) -> None:
        """Hand the bot's final callback attempt (accepted or rejected) to whoever awaits the interaction."""
        raw_id = recorded.params.get("interaction_id", "")
        record = self._world.interactions.get(int(raw_id)) if raw_id.isdigit() else None
        if record is None or record.token != recorded.params.get("interaction_token"):
            return
        if record.response is not None and not record.response.done():
            record.response.set_result(recorded)

    # --- faults and rate limits ------------------------------------------------------------------------

    def _injected_fault(self, call: IncomingCall) -> FaultRule | None:
        for rule in self.faults:
            if rule.applies(call):
                rule.remaining -= 1
                return rule
        return None

    def _fault_reply(self, rule: FaultRule) -> Reply:
        if rule.status == 429:
            return self._too_many(rule.retry_after, via=rule.via, is_global=rule.is_global, bucket="injected")
        if rule.status == 502 and rule.code is None:
            return Reply(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>")
        default = {500: "500: Internal Server Error", 503: "503: Service Unavailable"}
        message = rule.message or default.get(rule.status, f"{rule.status}: injected failure")
        return Reply(rule.status, {"message": message, "code": rule.code or 0})

    def _too_many(
        self, retry_after: float, *, via: bool, is_global: bool, bucket: str, limit: int = 1
    ) -> Reply:
        retry_after = round(max(retry_after, 0.001), 3)
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{self._world.clock.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        if via:
            # Without Via discord.py takes a 429 for a Cloudflare ban and raises instead of retrying.
            headers["Via"] = "1.1 google"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return Reply(429, body, headers)

    def _rate_limited(self, call: IncomingCall) -> tuple[Reply | None, dict[str, str]]:
        for rule in self.rate_limits:
            if not route_matches(rule.pattern, call.method, call.route, call.path):
                continue
            key = next(
                (call.params[k] for k in ("channel_id", "guild_id", "interaction_token") if k in call.params),
                "",
            )
            now = self._world.clock.monotonic()
            start, count = rule.windows.get(key, (now, 0))
            if now >= start + rule.per:
                start, count = now, 0
            reset_after = start + rule.per - now
            if count >= rule.limit:
                reply = self._too_many(
                    reset_after, via=True, is_global=False, bucket=rule.bucket, limit=rule.limit
                )
                return reply, {}
            rule.windows[key] = (start, count + 1)
            if not rule.send_headers:
                return None, {}
            return None, {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Remaining": str(rule.limit - count - 1),
                "X-RateLimit-Reset": f"{self._world.clock.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": rule.bucket,
            }
        return None, {}

    # --- lookups -----------------------------------------------------------------------------------------

    @staticmethod
    def _snowflake(value: str, name: str) -> int:
        if not value.isdigit():
            raise form_error({name: leaf_error("NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')})
        return int(value)

    def _channel(self, call: IncomingCall) -> FakeChannel | FakeDMChannel:
        channel = self._world.channel(self._snowflake(call.params["channel_id"], "channel_id"))
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if not channel.accessible:
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _channel_message(self, call: IncomingCall, channel: FakeChannel | FakeDMChannel) -> StoredMessage:
        message = self._world.messages.get(self._snowflake(call.params["message_id"], "message_id"))
        # Ephemeral messages exist only for the interaction webhook, never on the channel.
        if message is None or message.channel_id != channel.id or message.deleted or message.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    # --- users, application, gateway, guilds ---------------------------------------------------------

    async def _get_me(self, call: IncomingCall) -> Reply:
        user = self._world.bot_user.payload()
        user.update({"verified": True, "mfa_enabled": False, "flags": 0, "email": None, "locale": "en-US"})
        return Reply(200, user)

    async def _get_user(self, call: IncomingCall) -> Reply:
        user = self._world.users.get(self._snowflake(call.params["user_id"], "user_id"))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return Reply(200, user.payload())

    async def _get_application(self, call: IncomingCall) -> Reply:
        world = self._world
        return Reply(
            200,
            {
                "id": str(world.application_id),
                "name": world.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": world.application_flags,
                "owner": world.owner.payload(),
                "team": None,
                "bot": world.bot_user.payload(),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "approximate_guild_count": len(world.guilds),
                "integration_types_config": {"0": {}},
            },
        )

    def _gateway_url(self) -> str:
        return self._world.http_base.replace("http://", "ws://", 1)

    async def _get_gateway(self, call: IncomingCall) -> Reply:
        return Reply(200, {"url": self._gateway_url()})

    async def _get_gateway_bot(self, call: IncomingCall) -> Reply:
        world = self._world
        limit = {
            "total": world.session_start_total,
            "remaining": max(0, world.session_start_total - world.session_starts),
            "reset_after": 86_400_000,
            "max_concurrency": world.max_concurrency,
        }
        data = {"url": self._gateway_url(), "shards": world.recommended_shards, "session_start_limit": limit}
        return Reply(200, data)

    def _guild(self, call: IncomingCall) -> Any:
        guild = self._world.guilds.get(self._snowflake(call.params["guild_id"], "guild_id"))
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, call: IncomingCall) -> Reply:
        guild = self._guild(call)
        data = guild.rest_payload()
        if call.query.get("with_counts") in ("true", "1", "True"):
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return Reply(200, data)

    async def _get_guild_channels(self, call: IncomingCall) -> Reply:
        return Reply(200, [c.payload() for c in self._guild(call).channels.values()])

    async def _get_guild_roles(self, call: IncomingCall) -> Reply:
        return Reply(200, [r.payload() for r in self._guild(call).roles.values()])

    async def _get_member(self, call: IncomingCall) -> Reply:
        guild = self._guild(call)
        member = guild.members.get(self._snowflake(call.params["user_id"], "user_id"))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return Reply(200, member.payload())

    # --- channel messages ----------------------------------------------------------------------------

    async def _get_channel(self, call: IncomingCall) -> Reply:
        return Reply(200, self._channel(call).payload())

    async def _list_messages(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        raw_limit = call.query.get("limit", "50")
        limit = int(raw_limit) if raw_limit.isdigit() else 50
        found = [
            m
            for m in self._world.messages.values()
            if m.channel_id == channel.id and not m.deleted and not m.ephemeral
        ]
        found.sort(key=lambda m: m.id, reverse=True)
        return Reply(200, [m.payload() for m in found[: max(1, min(limit, 100))]])

    async def _create_message(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        payload = _require_object(call.payload)
        if isinstance(channel, FakeDMChannel) and (channel.recipient.bot or not channel.recipient.dms_open):
            # Closed DMs (privacy settings, a block, no shared server) and bots: Discord refuses the message.
            raise ApiError(403, 50007, "Cannot send messages to this user")
        message = StoredMessage(
            id=self._world.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self._world.bot_user,
            created_at=self._world.clock.time(),
        )
        allowed = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
        self._apply(message, payload, call.files, creating=True, allowed_flags=allowed)
        self._world.messages[message.id] = message
        return Reply(200, message.payload())

    async def _get_message(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        return Reply(200, self._channel_message(call, channel).payload())

    async def _edit_message(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        self._apply(message, _require_object(call.payload), call.files, creating=False)
        return Reply(200, message.payload())

    async def _delete_message(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        await self.delete(self._channel_message(call, channel))
        return Reply(204)

    async def delete(self, message: StoredMessage) -> None:
        """Mark `message` deleted and send MESSAGE_DELETE (GUILD_MESSAGES or DIRECT_MESSAGES intent)."""
        message.deleted = True
        message.deleted_at = self._world.clock.time()
        if message.ephemeral:
            return  # nobody but the interaction's user ever saw it
        data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        intent = INTENT_GUILD_MESSAGES if message.guild_id is not None else INTENT_DIRECT_MESSAGES
        await self.send_event("MESSAGE_DELETE", data, intent)

    # --- direct messages -------------------------------------------------------------------------------

    async def _create_dm(self, call: IncomingCall) -> Reply:
        payload = _require_object(call.payload)
        raw = payload.get("recipient_id")
        if raw is None:
            raise form_error({"recipient_id": leaf_error("BASE_TYPE_REQUIRED", "This field is required")})
        user = self._world.users.get(self._snowflake(str(raw), "recipient_id"))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        # Opening the channel always works; whether a message gets through is decided when it is sent.
        return Reply(200, self._world.dm_channel_with(user).payload())

    # --- reactions -------------------------------------------------------------------------------------

    def _reaction_target(self, call: IncomingCall) -> tuple[StoredMessage, str]:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        emoji = reaction_key(call.params["emoji"])
        if emoji is None:
            raise ApiError(400, 10014, "Unknown Emoji")
        return message, emoji

    def _require_manage_messages(self, message: StoredMessage) -> None:
        if message.guild_id is None:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        guild = self._world.guilds[message.guild_id]
        if not guild.permissions_of(self._world.bot_user.id) & MANAGE_MESSAGES:
            raise ApiError(403, 50013, "Missing Permissions")

    def reaction_refusal(self, message: StoredMessage, emoji: str, user: FakeUser) -> ApiError | None:
        """Why Discord would refuse `user`'s new reaction (20 emoji at most; a new emoji needs
        Add Reactions), or None."""
        if emoji in message.reactions:
            return None
        if len(message.reactions) >= 20:
            return ApiError(400, 30010, "Maximum number of reactions reached (20)")
        if message.guild_id is not None:
            guild = self._world.guilds[message.guild_id]
            if not guild.permissions_of(user.id) & ADD_REACTIONS:
                return ApiError(403, 50013, "Missing Permissions")
        return None

    async def set_reaction(
        self, message: StoredMessage, emoji: str, user: FakeUser, *, present: bool
    ) -> dict[str, Any] | None:
        """Add (`present`) or remove `user`'s reaction and send MESSAGE_REACTION_ADD / _REMOVE to sessions
        with the (guild or direct) message reactions intent. Returns the event, None if nothing changed."""
        users = message.reactions.get(emoji, [])
        if present == (user.id in users):
            return None
        if present:
            message.reactions.setdefault(emoji, []).append(user.id)
        else:
            users.remove(user.id)
            if not users:
                del message.reactions[emoji]
        member = None
        if message.guild_id is not None:
            member = self._world.guilds[message.guild_id].members.get(user.id)
        data = reaction_event(message, emoji, user, member, added=present)
        guild_message = message.guild_id is not None
        intent = INTENT_GUILD_MESSAGE_REACTIONS if guild_message else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.send_event("MESSAGE_REACTION_ADD" if present else "MESSAGE_REACTION_REMOVE", data, intent)
        return data

    async def _add_own_reaction(self, call: IncomingCall) -> Reply:
        message, emoji = self._reaction_target(call)
        refusal = self.reaction_refusal(message, emoji, self._world.bot_user)
        if refusal is not None:
            raise refusal
        await self.set_reaction(message, emoji, self._world.bot_user, present=True)
        return Reply(204)

    async def _remove_own_reaction(self, call: IncomingCall) -> Reply:
        message, emoji = self._reaction_target(call)
        await self.set_reaction(message, emoji, self._world.bot_user, present=False)
        return Reply(204)

    async def _remove_user_reaction(self, call: IncomingCall) -> Reply:
        message, emoji = self._reaction_target(call)
        user_id = self._snowflake(call.params["user_id"], "user_id")
        if user_id != self._world.bot_user.id:
            self._require_manage_messages(message)
        user = self._world.users.get(user_id)
        if user is not None:
            await self.set_reaction(message, emoji, user, present=False)
        return Reply(204)

    async def _list_reaction_users(self, call: IncomingCall) -> Reply:
        message, emoji = self._reaction_target(call)
        raw_limit = call.query.get("limit", "25")
        limit = max(1, min(int(raw_limit) if raw_limit.isdigit() else 25, 100))
        raw_after = call.query.get("after", "0")
        after = int(raw_after) if raw_after.isdigit() else 0
        ids = sorted(u for u in message.reactions.get(emoji, []) if u > after)[:limit]
        return Reply(200, [self._world.users[u].payload() for u in ids if u in self._world.users])

    async def _clear_reactions(self, call: IncomingCall) -> Reply:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        self._require_manage_messages(message)
        data: dict[str, Any] = {"channel_id": str(message.channel_id), "message_id": str(message.id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        if "emoji" in call.params:
            emoji = reaction_key(call.params["emoji"])
            if emoji is None:
                raise ApiError(400, 10014, "Unknown Emoji")
            if message.reactions.pop(emoji, None):
                data["emoji"] = emoji_payload(emoji)
                await self.send_event("MESSAGE_REACTION_REMOVE_EMOJI", data, INTENT_GUILD_MESSAGE_REACTIONS)
        elif message.reactions:
            message.reactions.clear()
            await self.send_event("MESSAGE_REACTION_REMOVE_ALL", data, INTENT_GUILD_MESSAGE_REACTIONS)
        return Reply(204)

    async def _typing(self, call: IncomingCall) -> Reply:
        self._channel(call)
        return Reply(204)

    def _apply(
        self,
        message: StoredMessage,
        payload: dict[str, Any],
        files: tuple[RecordedFile, ...],
        *,
        creating: bool,
        allowed_flags: int = 0,
    ) -> None:
        """Validate a create/edit payload like Discord does, then change the stored message."""
        # A deferred response's placeholder becomes the real message with its first content.
        first_content = creating or message.loading
        errors = message_form_errors(payload) | allowed_mentions_errors(payload.get("allowed_mentions"))
        if errors:
            raise form_error(errors)
        limit = self._world.upload_limit_for(message.guild_id)
        for upload in files:
            if len(upload.data) > limit:
                raise ApiError(413, 40005, "Request entity too large")

        content = message.content
        if "content" in payload:
            content = payload["content"] or ""
        embeds = message.embeds
        if "embeds" in payload:
            embeds = list(payload["embeds"] or [])
        components = message.components
        if "components" in payload:
            components = list(payload["components"] or [])
        flags = message.flags
        if "flags" in payload and payload["flags"] is not None:
            requested = int(payload["flags"])
            if creating:
                flags = requested & allowed_flags
            else:
                # Only SUPPRESS_EMBEDS can be toggled on edit; IS_COMPONENTS_V2 can be set but never unset.
                flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (
                    requested & (FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2)
                )
        if flags & FLAG_COMPONENTS_V2 and (content or embeds):
            raise form_error(
                {
                    "content": leaf_error(
                        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2", V2_LEGACY_MESSAGE
                    )
                }
            )
        v2_errors = components_errors(components, v2=bool(flags & FLAG_COMPONENTS_V2))
        if v2_errors:
            raise form_error(v2_errors)
        attachments = self._attachments(message, payload, files, creating=creating)
        has_extra = bool(payload.get("sticker_ids") or payload.get("poll"))
        if not (content.strip() or embeds or attachments or components or has_extra):
            raise ApiError(400, 50006, "Cannot send an empty message")

        if not creating:
            message.history.append(message.payload())
            message.edited_at = self._world.clock.time()
            flags &= ~FLAG_LOADING
        message.content, message.embeds, message.components = content, embeds, components
        message.attachments, message.flags = attachments, flags
        if first_content:  # only a new message notifies anyone; edits never ping again
            message.allowed_mentions = payload.get("allowed_mentions")
            message.mentions = mentioned_users(content, message.allowed_mentions, self._world.users)

    def _attachments(
        self,
        message: StoredMessage,
        payload: dict[str, Any],
        files: tuple[RecordedFile, ...],
        *,
        creating: bool,
    ) -> list[StoredAttachment]:
        uploads: dict[str, RecordedFile] = {}
        for position, upload in enumerate(files):
            found = re.fullmatch(r"files\[(\d+)\]", upload.field)
            uploads[found.group(1) if found else str(position)] = upload
        existing = {str(a.id): a for a in ([] if creating else message.attachments)}

        def store(upload: RecordedFile, entry: dict[str, Any]) -> StoredAttachment:
            return self._world.new_attachment(
                message.channel_id,
                str(entry.get("filename") or upload.filename),
                upload.data,
                description=entry.get("description"),
                ephemeral=message.ephemeral,
            )

        if "attachments" not in payload:
            kept = list(existing.values())
            return kept + [store(u, {}) for u in uploads.values()]
        result: list[StoredAttachment] = []
        errors: dict[str, Any] = {}
        for index, entry in enumerate(payload["attachments"] or []):
            key = str(entry.get("id")) if isinstance(entry, dict) else ""
            if key in uploads:
                result.append(store(uploads[key], entry))
            elif key in existing:
                result.append(existing[key])
            else:
                errors[str(index)] = {"id": leaf_error("ATTACHMENT_NOT_FOUND", "Unknown attachment.")}
        if len(result) > 10:
            errors["_errors"] = [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}
            ]
        if errors:
            raise form_error({"attachments": errors})
        return result

    # --- application commands ----------------------------------------------------------------------

    def _command_store(self, call: IncomingCall) -> tuple[dict[tuple[str, int], dict[str, Any]], int | None]:
        app_id = self._snowflake(call.params["application_id"], "application_id")
        if app_id != self._world.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if "guild_id" not in call.params:
            return self._world.global_commands, None
        guild = self._guild(call)
        return self._world.guild_commands.setdefault(guild.id, {}), guild.id

    async def _get_commands(self, call: IncomingCall) -> Reply:
        store, _ = self._command_store(call)
        return Reply(200, list(store.values()))

    async def _put_commands(self, call: IncomingCall) -> Reply:
        store, guild_id = self._command_store(call)
        payload = call.payload
        if not isinstance(payload, list):
            raise form_error(
                {"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used."}]}
            )
        errors = commands_errors(payload)
        if errors:
            raise form_error(errors)
        fresh: dict[tuple[str, int], dict[str, Any]] = {}
        for command in payload:
            kind = int(command.get("type", 1))
            key = (command["name"], kind)
            previous = store.get(key)
            stored = {
                "id": previous["id"] if previous else str(self._world.snowflake()),
                "application_id": str(self._world.application_id),
                "version": str(self._world.snowflake()),
                "type": kind,
                "name": command["name"],
                "name_localizations": command.get("name_localizations"),
                "description": command.get("description", ""),
                "description_localizations": command.get("description_localizations"),
                "options": command.get("options", []),
                "default_member_permissions": command.get("default_member_permissions"),
                "dm_permission": command.get("dm_permission", True),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types", [0]),
                "nsfw": command.get("nsfw", False),
            }
            if guild_id is not None:
                stored["guild_id"] = str(guild_id)
            fresh[key] = stored
        store.clear()
        store.update(fresh)
        return Reply(200, list(store.values()))

    # --- interactions ----------------------------------------------------------------------------------

    async def _callback(self, call: IncomingCall) -> Reply:
        world = self._world
        record = world.interactions.get(self._snowflake(call.params["interaction_id"], "interaction_id"))
        if record is None:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.token != call.params["interaction_token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if record.callback_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if world.clock.monotonic() - record.created_at > self.interaction_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        payload = _require_object(call.payload)
        kind = payload.get("type")
        if kind not in ALLOWED_CALLBACKS.get(record.type, set()):
            message = "Interaction callback type is not valid for this interaction type."
            raise form_error({"type": leaf_error("INTERACTION_RESPONSE_TYPE_INVALID", message)})
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise form_error({"data": leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used.")})

        message: StoredMessage | None = None
        if kind == CALLBACK_CHANNEL_MESSAGE:
            message = self._interaction_message(record, data, call.files)
            record.original_message_id = message.id
        elif kind == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
            loading = StoredMessage(
                id=world.snowflake(),
                channel_id=record.channel_id,
                guild_id=record.guild_id,
                author=world.bot_user,
                created_at=world.clock.time(),
                flags=FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL),
                **self._interaction_fields(record),
            )
            world.messages[loading.id] = loading
            record.message_ids.append(loading.id)
            record.original_message_id = loading.id
            message = loading
        elif kind in (CALLBACK_DEFERRED_UPDATE_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            source = world.messages.get(record.source_message_id or 0)
            if source is None or source.deleted:
                raise ApiError(404, 10008, "Unknown Message")
            if kind == CALLBACK_UPDATE_MESSAGE:
                self._apply(source, data, call.files, creating=False)
                message = source
            record.original_message_id = source.id
        elif kind == CALLBACK_AUTOCOMPLETE_RESULT:
            errors = choices_errors(data.get("choices"))
            if errors:
                raise form_error({"data": errors})
        elif kind == CALLBACK_MODAL:
            errors = modal_errors(data)
            if errors:
                raise form_error({"data": errors})
            record.modal = data
        record.callback_type = kind

        if call.query.get("with_response") not in ("1", "true", "True"):
            return Reply(204)
        callback: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if kind in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE) and message is not None:
            callback["response_message_id"] = str(message.id)
            callback["response_message_loading"] = kind == CALLBACK_DEFERRED_CHANNEL_MESSAGE
            callback["response_message_ephemeral"] = message.ephemeral
        if kind in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_UPDATE_MESSAGE) and message is not None:
            resource["message"] = message.payload()
        return Reply(200, {"interaction": callback, "resource": resource})

    def _interaction_fields(self, record: InteractionRecord) -> dict[str, Any]:
        world = self._world
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": record.user.payload(),
            "authorizing_integration_owners": {"0": str(record.guild_id)} if record.guild_id else {},
        }
        data = record.payload.get("data") or {}
        if record.type == INTERACTION_APPLICATION_COMMAND:
            metadata["name"] = data.get("name")
        if record.source_message_id is not None:
            metadata["interacted_message_id"] = str(record.source_message_id)
        return {
            "webhook_id": world.application_id,
            "application_id": world.application_id,
            "interaction_metadata": metadata,
            "type": 20 if record.type == INTERACTION_APPLICATION_COMMAND else 0,
        }

    def _interaction_message(
        self, record: InteractionRecord, data: dict[str, Any], files: tuple[RecordedFile, ...]
    ) -> StoredMessage:
        world = self._world
        message = StoredMessage(
            id=world.snowflake(),
            channel_id=record.channel_id,
            guild_id=record.guild_id,
            author=world.bot_user,
            created_at=world.clock.time(),
            flags=int(data.get("flags") or 0) & FLAG_EPHEMERAL,
            **self._interaction_fields(record),
        )
        allowed = FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
        self._apply(message, data, files, creating=True, allowed_flags=allowed)
        world.messages[message.id] = message
        record.message_ids.append(message.id)
        return message

    def _webhook_interaction(self, call: IncomingCall) -> InteractionRecord:
        world = self._world
        app_id = self._snowflake(call.params["application_id"], "webhook_id")
        if app_id != world.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        record = world.interactions_by_token.get(call.params["interaction_token"])
        if record is None or record.expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if world.clock.monotonic() - record.created_at > INTERACTION_TOKEN_LIFETIME:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return record

    def _hook_message(self, call: IncomingCall, record: InteractionRecord) -> StoredMessage:
        raw = call.params.get("message_id")
        if raw is None:  # @original
            message_id = record.original_message_id
        else:
            message_id = self._snowflake(raw, "message_id")
            if message_id not in record.message_ids and message_id != record.original_message_id:
                message_id = None
        message = self._world.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _followup(self, call: IncomingCall) -> Reply:
        record = self._webhook_interaction(call)
        if record.callback_type is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        payload = _require_object(call.payload)
        original = self._world.messages.get(record.original_message_id or 0)
        if original is not None and original.loading and not original.deleted:
            # The first followup after a deferred response replaces the "is thinking..." message.
            self._apply(original, payload, call.files, creating=False)
            message = original
        else:
            message = self._interaction_message(record, payload, call.files)
        if call.query.get("wait") in ("1", "true", "True"):
            return Reply(200, message.payload())
        return Reply(204)

    async def _get_hook(self, call: IncomingCall) -> Reply:
        record = self._webhook_interaction(call)
        return Reply(200, self._hook_message(call, record).payload())

    async def _edit_hook(self, call: IncomingCall) -> Reply:
        record = self._webhook_interaction(call)
        message = self._hook_message(call, record)
        self._apply(message, _require_object(call.payload), call.files, creating=False)
        return Reply(200, message.payload())

    async def _del_hook(self, call: IncomingCall) -> Reply:
        record = self._webhook_interaction(call)
        await self.delete(self._hook_message(call, record))
        return Reply(204)

    # --- CDN -------------------------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        attachment_id = request.match_info["attachment_id"]
        attachment = self._world.cdn.get(int(attachment_id)) if attachment_id.isdigit() else None
        call = IncomingCall(
            "GET",
            request.path,
            "GET /attachments/{channel_id}/{attachment_id}/{filename}",
            dict(request.match_info),
            dict(request.query),
            {},
            None,
            {},
            (),
        )
        if attachment is None or attachment.filename != request.match_info["filename"]:
            await self._finish(call, Reply(404, text="Not Found"))
            return web.Response(status=404, text="Not Found")
        await self._finish(call, Reply(200, {"attachment_id": attachment_id, "size": attachment.size}))
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})


def _require_object(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise form_error(leaf_error("DICT_TYPE_CONVERT", "Only dictionaries may be used."))
    return payload
