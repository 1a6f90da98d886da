"""The application's services, built from the config: job store, outputs, event bus, metrics, backends,
scheduler, and the use cases the cogs call (`jobs`, `settings`, `queue`).

`Services(config)` builds nothing that touches disk or network; `start()` opens the database and starts the
scheduler, `close()` stops them. The Bot subclass calls both from its own lifecycle and hands the use cases
to the cogs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.backends import Backend, stable_client_id
from bot.config import Config
from bot.event_relay import PostgresEventRelay
from bot.events import EventBus
from bot.image_storage import FolderStorage, ImageStorage, S3Storage
from bot.instance_lock import InstanceLock
from bot.job_service import JobService
from bot.metrics import Metrics
from bot.outputs import OutputStore
from bot.queue_service import QueueService
from bot.retention import apply_retention
from bot.scheduler import Scheduler, SchedulerSettings
from bot.settings_service import SettingsService
from bot.store import Store, open_store
from comfy.client import ComfyClient
from comfy.workflow import TemplateRegistry

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


def image_storage(config: Config) -> ImageStorage:
    """Where images live: `[storage.s3]` when set (every process reads what another wrote), else the
    `storage.output_dir` folder."""
    s3 = config.storage.s3
    if s3 is None:
        return FolderStorage(config.storage.output_dir)
    return S3Storage(s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region)


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
        self.outputs = OutputStore(config.storage.output_dir, image_storage(config))
        # load_config made every template path absolute, so the base folder is never used.
        self.templates = TemplateRegistry.from_config(config.templates, Path.cwd())
        self.templates.validate_models(config.models)
        database = config.storage.database_path
        # One process per SQLite file; PostgreSQL is how several run (each drives the backends it leases).
        self._lock = InstanceLock(database) if database is not None else None
        self.lease_holder = (
            "sqlite"
            if database is not None
            else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self._relay: PostgresEventRelay | None = None
        # Called when job events of other processes may have been missed (the event relay reconnected):
        # whoever shows jobs reads what it missed from the database (the bot sets it).
        self.on_events_missed: Callable[[], None] = lambda: None
        self._store: Store | None = None
        self._scheduler: Scheduler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retention: asyncio.Task[None] | None = None
        # The use cases, built once; they reach the store and scheduler above once started.
        self.jobs = JobService(self)
        self.settings = SettingsService(self)
        self.queue = QueueService(self)

    @property
    def store(self) -> Store:
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
        """Open the database (migrating it) and start the scheduler, which reconciles jobs in flight.

        Raises `bot.instance_lock.DatabaseInUse` when another process runs on the same SQLite file.
        """
        database = self.config.storage.database
        if self._lock is not None:
            self._lock.acquire()
        try:
            await self._start(database)
        except BaseException:
            await self.close()
            raise
        log.info(
            "services started: %d backend(s), database %s, lease holder %s",
            len(self.config.backends),
            database,
            self.lease_holder,
        )

    async def _start(self, database: object) -> None:
        self._store = await open_store(self.config.storage.database, clock=self.clock)
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
        url = self.config.storage.database_url
        if url is not None:
            import asyncpg

            # Named after this process in pg_stat_activity (PostgreSQL keeps 63 bytes of it).
            name = f"comfy-imagine relay {self.lease_holder}"[:63]
            self._relay = PostgresEventRelay(
                lambda: asyncpg.connect(url.secret(), server_settings={"application_name": name}),
                self.bus,
                on_reconnect=lambda: self.on_events_missed(),
            )
        relay = self._relay
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
                lease_s=settings.lease_s,
                lease_holder=self.lease_holder,
                # Other processes queue jobs too: look for work now and then, not only when woken.
                poll_s=settings.lease_s / 3 if relay is not None else None,
            ),
            announce_work=relay.wake_others if relay is not None else lambda: None,
        )
        if relay is not None:
            relay.on_wake = self._scheduler.wake
            await relay.start()
        await self._scheduler.start()
        self._retention = asyncio.create_task(self._retention_loop(), name="retention")

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
        if self._relay is not None:
            await self._relay.close()
            self._relay = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
