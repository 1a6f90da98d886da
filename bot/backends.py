"""The ComfyUI backends the scheduler feeds: their clients, health, capabilities and load."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from comfy.client import ComfyClient
from comfy.models import ComfyError, SystemStats
from comfy.object_info import input_choices, samplers_and_schedulers
from comfy.profiles import BackendConfig, ModelProfile

log = logging.getLogger(__name__)

# Longest pause of a backend that keeps failing prompts on its side (see Backend.prompt_refused).
MAX_PAUSE_S = 600.0

# Namespace of the ComfyUI client ids: stable per database and backend, so prompts posted before a
# restart are routed to the restarted bot's socket (ComfyUI sends a prompt's events only to its client id).
_CLIENT_ID_NAMESPACE = uuid.UUID("6b0c5a1e-2f7e-4a4e-9a57-0c4f1d2b9e11")


def stable_client_id(database: str, backend_name: str) -> str:
    """The WebSocket client id for one backend of one bot installation."""
    return uuid.uuid5(_CLIENT_ID_NAMESPACE, f"{database}|{backend_name}").hex


@dataclass(eq=False)
class Backend:
    """One ComfyUI server as the scheduler sees it."""

    config: BackendConfig
    client: ComfyClient
    prefetch: int = 1
    up: bool = False
    down_since: float | None = None
    last_error: str | None = None
    stats: SystemStats | None = None
    checkpoints: frozenset[str] | None = None  # None: not known (yet)
    samplers: tuple[str, ...] | None = None
    schedulers: tuple[str, ...] | None = None
    jobs: set[int] = field(default_factory=set)
    held: bool = False  # this process holds the backend's lease and drives it (bot.backend_leases)
    refusals: int = 0  # prompts in a row that failed on this backend's side (5xx, dropped connection)
    paused_until: float | None = None  # after a refusal, no new job until then
    refusal: str | None = None  # why the last prompt failed, while paused
    _up_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def name(self) -> str:
        """The configured name."""
        return self.config.name

    @property
    def capacity(self) -> int:
        """Jobs in flight at once: the ones running plus the ones waiting in ComfyUI's own queue."""
        return self.config.max_running + self.prefetch

    @property
    def available(self) -> bool:
        """Up and not paused after a refusal: it takes jobs when it has room."""
        return self.up and self.paused_until is None

    @property
    def free_slots(self) -> int:
        """How many more jobs this backend takes now (none while down or paused after a refusal)."""
        return max(0, self.capacity - len(self.jobs)) if self.available else 0

    def prompt_refused(self, now: float, base_s: float, reason: str) -> float:
        """A prompt failed on the backend's side: take no new job for `base_s`, doubled for every refusal in
        a row (at most MAX_PAUSE_S); returns the pause. A job that keeps failing still runs out of attempts.
        The pause ends early when a health check finds the backend back up after being down."""
        self.refusals += 1
        pause = min(MAX_PAUSE_S, base_s * 2 ** (self.refusals - 1))
        self.paused_until = now + pause
        self.refusal = reason
        log.warning(
            "backend %s (%s) failed a prompt (%s); no new job for %.1f s",
            self.name,
            self.config.base_url,
            reason,
            pause,
        )
        return pause

    def prompt_accepted(self) -> None:
        """A prompt was queued: the backend works, forget its refusals."""
        self.refusals = 0
        self.paused_until = self.refusal = None

    def pause_over(self, now: float) -> bool:
        """End a refusal pause that is due; True when one ended (the backend takes jobs again)."""
        if self.paused_until is None or now < self.paused_until:
            return False
        self.paused_until = self.refusal = None
        return True

    @property
    def load(self) -> float:
        """Share of the capacity in use, for picking the least busy backend."""
        return len(self.jobs) / self.capacity

    @property
    def version(self) -> str | None:
        """ComfyUI's version as its /system_stats reports it."""
        return self.stats.system.comfyui_version if self.stats else None

    def runnable_models(self, models: Sequence[ModelProfile]) -> list[str] | None:
        """Model names whose checkpoint this backend has; None when its checkpoints are not known."""
        if self.checkpoints is None:
            return None
        return [m.name for m in models if m.checkpoint in self.checkpoints]

    async def wait_up(self) -> None:
        """Wait until a health check finds the backend up (at once if it is)."""
        await self._up_event.wait()

    async def refresh(self, clock: Callable[[], float] = time.monotonic) -> bool:
        """Check health (and capabilities when they are unknown or the backend just came back).

        Returns True when the up/down state changed.
        """
        was_up = self.up
        try:
            self.stats = await self.client.system_stats()
            if not was_up or self.checkpoints is None:
                await self._read_capabilities()
            if self.held:  # only the process that drives the backend keeps its socket (one per client id)
                await self.client.connect()
        except (ComfyError, OSError, TimeoutError) as exc:
            self.last_error = str(exc)
            if was_up or self.down_since is None:
                self.down_since = clock()
                log.warning("backend %s (%s) is down: %s", self.name, self.config.base_url, exc)
            self.up = False
            self._up_event.clear()
            return was_up
        self.up = True
        self._up_event.set()
        self.down_since = None
        self.last_error = None
        if not was_up:
            # Back (or up for the first time): prompts refused while it was going down say nothing now.
            self.prompt_accepted()
            log.info("backend %s (%s) is up: ComfyUI %s", self.name, self.config.base_url, self.version)
        return not was_up

    async def _read_capabilities(self) -> None:
        info = await self.client.object_info("CheckpointLoaderSimple")
        names = input_choices(info, "CheckpointLoaderSimple", "ckpt_name")
        self.checkpoints = frozenset(names) if names is not None else None
        try:
            sampler_info = await self.client.object_info("KSampler")
            samplers, schedulers = samplers_and_schedulers(sampler_info)
            self.samplers, self.schedulers = tuple(samplers), tuple(schedulers)
        except (ComfyError, ValueError) as exc:
            log.debug("backend %s: sampler lists unknown: %s", self.name, exc)
