"""The application's services, built from the config: job store, outputs, event bus, metrics, backends,
scheduler, and the use cases the cogs call (`jobs`, `settings`, `queue`).

`Services(config)` builds nothing that touches disk or network; `start()` opens the database and starts the
scheduler, `close()` stops them. The Bot subclass calls both from its own lifecycle and hands the use cases
to the cogs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.backends import Backend, stable_client_id
from bot.config import Config
from bot.events import EventBus
from bot.job_service import JobService
from bot.metrics import Metrics
from bot.outputs import OutputStore
from bot.queue_service import QueueService
from bot.retention import apply_retention
from bot.scheduler import Scheduler, SchedulerSettings
from bot.settings_service import SettingsService
from bot.store import JobStore
from comfy.client import ComfyClient
from comfy.workflow import TemplateRegistry

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


class ServicesNotStarted(RuntimeError):
    """A service was used before `Services.start()`."""


class Services:
    """Everything the Discord layer calls into, with one lifecycle.

    The cogs call the use cases: `jobs` (/imagine, every button under a job, /cancel), `settings`
    (/settings) and `queue` (/queue, /status).
    """

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.bus = EventBus()
        self.metrics = Metrics()
        self.outputs = OutputStore(config.storage.output_dir)
        # load_config made every template path absolute, so the base folder is never used.
        self.templates = TemplateRegistry.from_config(config.templates, Path.cwd())
        self.templates.validate_models(config.models)
        self._store: JobStore | None = None
        self._scheduler: Scheduler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retention: asyncio.Task[None] | None = None
        # The use cases, built once; they reach the store and scheduler above once started.
        self.jobs = JobService(self)
        self.settings = SettingsService(self)
        self.queue = QueueService(self)

    @property
    def store(self) -> JobStore:
        """The open job store."""
        if self._store is None:
            raise ServicesNotStarted("the job store is not open yet")
        return self._store

    @property
    def scheduler(self) -> Scheduler:
        """The running scheduler."""
        if self._scheduler is None:
            raise ServicesNotStarted("the scheduler is not running yet")
        return self._scheduler

    @property
    def started(self) -> bool:
        """Whether start() has run (and close() has not)."""
        return self._scheduler is not None

    async def start(self) -> None:
        """Open the database (migrating it) and start the scheduler, which reconciles jobs in flight."""
        database = self.config.storage.database
        self._store = await JobStore.open(str(database), clock=self.clock)
        self._session = aiohttp.ClientSession()
        backends = [
            Backend(
                config=backend,
                client=ComfyClient(
                    backend,
                    session=self._session,
                    client_id=stable_client_id(str(database), backend.name),
                    preview_metadata=self.config.progress.previews,
                ),
                prefetch=self.config.scheduler.prefetch,
            )
            for backend in self.config.backends
        ]
        settings = self.config.scheduler
        self._scheduler = Scheduler(
            store=self._store,
            backends=backends,
            templates=self.templates,
            outputs=self.outputs,
            bus=self.bus,
            metrics=self.metrics,
            settings=SchedulerSettings(
                models=self.config.models,
                job_timeout_s=settings.job_timeout_s,
                health_interval_s=settings.health_interval_s,
                backend_grace_s=settings.backend_grace_s,
                max_attempts=settings.max_attempts,
            ),
        )
        await self._scheduler.start()
        self._retention = asyncio.create_task(self._retention_loop(), name="retention")
        log.info("services started: %d backend(s), database %s", len(backends), database)

    async def _retention_loop(self) -> None:
        storage = self.config.storage
        while True:
            try:
                await apply_retention(
                    self.store,
                    self.outputs,
                    retention_days=storage.retention_days,
                    max_total_mb=storage.max_total_mb,
                    now=self.clock,
                )
            except Exception:
                log.exception("retention failed (storage.retention_days / storage.max_total_mb)")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def close(self) -> None:
        """Stop the scheduler (jobs in flight are handed to the next start) and close the database."""
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
            self._retention = None
        if self._scheduler is not None:
            await self._scheduler.stop()
            self._scheduler = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._store is not None:
            await self._store.close()
            self._store = None
