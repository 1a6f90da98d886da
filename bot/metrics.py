"""Prometheus metrics and the /healthz endpoint (`[metrics] port`).

`Metrics` is a plain object the scheduler and the presenter update as things happen (each bot has its own
registry; nothing is global). Gauges that describe the queue are read from the database when Prometheus
scrapes, so they are never stale. `MetricsServer` serves `/metrics` and `/healthz` with aiohttp.

Exposed (all prefixed `comfy_imagine_`):
- `jobs{status}`: jobs waiting or in flight now (queued, submitted, running);
- `jobs_ended_total{status}`: jobs that completed, failed or were cancelled since the bot started;
- `queue_depth{guild}`: queued jobs per guild;
- `backend_up{backend}`, `backend_busy_ratio{backend}` (share of the last minute ComfyUI spent executing
  this bot's prompts), `backend_busy_seconds_total{backend}`;
- `sampler_steps_total{backend}` and `sampler_step_rate{backend}` (steps per second over the last minute);
- `discord_edits_total{purpose,outcome}` and `discord_posts_total{purpose,outcome}`: message edits and new
  messages the bot made, by purpose (progress, result) and outcome (ok, not_found, error);
- `discord_rate_limited_total` and `discord_global_rate_limited_total`: 429s discord.py waited out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from bot.jobs import QueueSnapshot

log = logging.getLogger(__name__)

WINDOW_S = 60.0
PREFIX = "comfy_imagine"


@dataclass
class _BackendActivity:
    """When one backend executed prompts: busy intervals and sampler steps within the window."""

    created: float
    running: int = 0
    busy_since: float | None = None
    credited_until: float | None = None  # busy time up to here is in the busy-seconds counter
    intervals: deque[tuple[float, float]] = field(default_factory=deque)
    steps: deque[float] = field(default_factory=deque)

    def trim(self, now: float, window: float) -> None:
        start = now - window
        while self.intervals and self.intervals[0][1] <= start:
            self.intervals.popleft()
        while self.steps and self.steps[0] <= start:
            self.steps.popleft()

    def busy_ratio(self, now: float, window: float) -> float:
        start = now - window
        busy = sum(end - max(begin, start) for begin, end in self.intervals if end > start)
        if self.busy_since is not None:
            busy += now - max(self.busy_since, start)
        span = min(window, now - self.created)
        return min(1.0, busy / span) if span > 0 else 0.0

    def step_rate(self, now: float, window: float) -> float:
        span = min(window, now - self.created)
        return len(self.steps) / span if span > 0 else 0.0


class Metrics:
    """The bot's counters and gauges, in a registry of its own."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self.registry = CollectorRegistry(auto_describe=True)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

        window = f"the last {window_s:g} s"
        self.jobs = gauge("jobs", "Jobs waiting or in flight, by status", "status")
        self.jobs_ended = counter("jobs_ended", "Jobs that ended since the bot started, by status", "status")
        self.queue_depth = gauge("queue_depth", "Queued jobs per guild", "guild")
        self.backend_up = gauge("backend_up", "1 while the backend answers its health check", "backend")
        self.busy_ratio = gauge(
            "backend_busy_ratio",
            f"Share of {window} the backend spent executing this bot's prompts",
            "backend",
        )
        self.busy_seconds = counter(
            "backend_busy_seconds", "Seconds the backend spent executing this bot's prompts", "backend"
        )
        self.steps = counter("sampler_steps", "Sampler steps executed, per backend", "backend")
        self.step_rate = gauge("sampler_step_rate", f"Sampler steps per second over {window}", "backend")
        self.discord_edits = counter(
            "discord_edits", "Message edits the bot made, by purpose and outcome", "purpose", "outcome"
        )
        self.discord_posts = counter(
            "discord_posts", "New messages the bot posted, by purpose and outcome", "purpose", "outcome"
        )
        self.discord_rate_limited = counter(
            "discord_rate_limited",
            "429 answers discord.py waited out (each counts toward Discord's invalid-request limit)",
        )
        self.discord_global_rate_limited = counter(
            "discord_global_rate_limited", "Of those, global rate limits (the whole bot waited)"
        )
        self._backends: dict[str, _BackendActivity] = {}

    # ------------------------------------------------------------------ what the scheduler reports

    def _activity(self, backend: str) -> _BackendActivity:
        activity = self._backends.get(backend)
        if activity is None:
            activity = self._backends[backend] = _BackendActivity(created=self.clock())
        return activity

    def add_backend(self, backend: str) -> None:
        """Start measuring a backend (its ratios count from now)."""
        self._activity(backend)
        self.backend_up.labels(backend).set(0)
        self.busy_seconds.labels(backend)
        self.steps.labels(backend)

    def prompt_started(self, backend: str) -> None:
        """A prompt of this bot began executing on `backend`."""
        activity = self._activity(backend)
        activity.running += 1
        if activity.running == 1:
            activity.busy_since = activity.credited_until = self.clock()

    def prompt_stopped(self, backend: str) -> None:
        """A prompt that `prompt_started` reported stopped executing (finished, failed, lost or cancelled)."""
        activity = self._activity(backend)
        if activity.running == 0:
            return
        activity.running -= 1
        if activity.running == 0 and activity.busy_since is not None:
            now = self.clock()
            activity.intervals.append((activity.busy_since, now))
            self._credit(backend, activity, now)
            activity.busy_since = activity.credited_until = None
            activity.trim(now, self.window_s)

    def sampler_step(self, backend: str) -> None:
        """One sampler step ran on `backend`."""
        self.steps.labels(backend).inc()
        activity = self._activity(backend)
        now = self.clock()
        activity.steps.append(now)
        if len(activity.steps) > 4096:
            activity.trim(now, self.window_s)

    def job_ended(self, status: str) -> None:
        """A job reached its end (completed, failed, cancelled)."""
        self.jobs_ended.labels(status).inc()

    def backend_health(self, backend: str, up: bool) -> None:
        """The latest health check of `backend`."""
        self.backend_up.labels(backend).set(1 if up else 0)

    # ------------------------------------------------------------------ what the presenter reports

    def discord_edit(self, purpose: str, outcome: str) -> None:
        """The bot edited a message (`purpose`: progress or result; `outcome`: ok, not_found, error)."""
        self.discord_edits.labels(purpose, outcome).inc()

    def discord_post(self, purpose: str, outcome: str) -> None:
        """The bot posted a new message (`purpose`: status or result)."""
        self.discord_posts.labels(purpose, outcome).inc()

    # ------------------------------------------------------------------ scraping

    def _credit(self, backend: str, activity: _BackendActivity, now: float) -> None:
        if activity.credited_until is not None and now > activity.credited_until:
            self.busy_seconds.labels(backend).inc(now - activity.credited_until)
            activity.credited_until = now

    def update(self, snapshot: QueueSnapshot) -> None:
        """Refresh the gauges from the database's snapshot and the activity windows."""
        for status, count in snapshot.by_status.items():
            self.jobs.labels(status).set(count)
        self.queue_depth.clear()
        for guild_id, count in snapshot.queued_by_guild.items():
            self.queue_depth.labels(str(guild_id)).set(count)
        now = self.clock()
        for name, activity in self._backends.items():
            activity.trim(now, self.window_s)
            self._credit(name, activity, now)
            self.busy_ratio.labels(name).set(activity.busy_ratio(now, self.window_s))
            self.step_rate.labels(name).set(activity.step_rate(now, self.window_s))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class RateLimitCounter(logging.Filter):
    """Counts the 429s discord.py waits out, from its own warnings (it offers no other hook); a filter on
    the `discord.http` logger that lets every record through. Needs that logger at WARNING or lower."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith("We are being rate limited."):
            self.metrics.discord_rate_limited.inc()
        elif message.startswith("Global rate limit has been hit"):
            self.metrics.discord_global_rate_limited.inc()
        return True


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of /healthz: healthy when Discord is connected and the database answers."""

    healthy: bool
    checks: Mapping[str, object]


class MetricsError(RuntimeError):
    """The metrics endpoint cannot listen (the message names `metrics.port`)."""


class MetricsServer:
    """Serves `/metrics` (Prometheus) and `/healthz` (JSON; 200 healthy, 503 not) on `host:port`."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        snapshot: Callable[[], Awaitable[QueueSnapshot]],
        health: Callable[[], Awaitable[Health]],
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._snapshot = snapshot
        self._health = health
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; a port in use is a MetricsError naming the config key."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsError(
                f"cannot serve metrics on {self.host}:{self.port} (metrics.host / metrics.port): {exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            self.metrics.update(await self._snapshot())
        except Exception:
            log.exception("cannot read the queue for /metrics")
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(5):
                health = await self._health()
        except Exception as exc:
            health = Health(False, {"error": f"{type(exc).__name__}: {exc}"})
        body = {"status": "ok" if health.healthy else "unhealthy", **health.checks}
        return web.Response(
            status=200 if health.healthy else 503,
            text=json.dumps(body, sort_keys=True),
            content_type="application/json",
        )
