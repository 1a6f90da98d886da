"""Two real bot processes on one PostgreSQL database, one Discord shard each: the harness of the scale-out
drills (tests/drills/test_scale_out.py).

    async with running_cluster(tmp_path, pg_databases) as cluster:   # fakes, database, no process yet
        await cluster.start(0); await cluster.start(1)                # `bot run` on shard 0, then shard 1
        job = await cluster.imagine(cluster.places[1], "a fox --seed 1")
        await cluster.wait_shown([job])                               # its result posted, status deleted
        await cluster.assert_each_job_done_once()

Each process runs `python -m bot run --config shardN.toml` with discord.py pointed at the fake Discord
(`FakeDiscord.pointed_command`); both configs name the same PostgreSQL database (over TCP), the same two
fake ComfyUIs (gpu0, gpu1) and the same output folder, and give each process its own /metrics port.
A guild lives on each shard (`places[0]`, `places[1]`), each with its own channel and member.
The test reads the database through a store of its own (`cluster.store`) and waits on its jobs without
polling: a trigger the harness adds to the drill's database notifies every change of a job row
(`cluster.wait_jobs`).
"""

# Test helpers here take `timeout=` like asyncio.wait_for does; that reads better in tests.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bot.jobs import Job, JobStatus
from bot.store.postgres import PostgresStore
from cogs._buttons import follow_up_job
from tests.e2e import job_id_of
from tests.fakes.comfy_server import FakeComfyUI
from tests.fakes.discord_models import FakeChannel, FakeGuild, FakeUser, StoredMessage
from tests.fakes.discord_server import SEND_ROUTE, FakeDiscord
from tests.pg import Databases

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 2
# Start-up of a bot process (imports, database, gateway) on a busy two-core machine.
START_S = 40.0

CONFIG = """
[discord]
token = "{token}"
shard_count = {shard_count}
shard_ids = [{shard}]

[storage]
database = "{database}"
output_dir = "outputs"

[[backends]]
name = "gpu0"
url = "{gpu0}"

[[backends]]
name = "gpu1"
url = "{gpu1}"

[[models]]
name = "tiny"
checkpoint = "random_sd15_tiny.safetensors"
width = 64
height = 64
steps = 4

[progress]
edit_interval_s = 0.2
channel_edits_per_5s = 50

[limits]
per_user_active = 50
per_user_per_minute = 100

[scheduler]
health_interval_s = 0.1
backend_grace_s = 5.0
lease_s = {lease_s}

[metrics]
port = {metrics_port}
"""


# The drill's own trigger: every insert or update of a job row notifies `drill_jobs` (the job id).
WATCH_CHANNEL = "drill_jobs"
WATCH_SQL = f"""
CREATE FUNCTION drill_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{WATCH_CHANNEL}', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER drill_job_changed AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION drill_job_changed();
"""


class JobWatch:
    """Wakes the drill whenever a job row changes (LISTEN on the trigger's channel), reconnecting after
    PostgreSQL restarts (a reconnect wakes it too: changes may have been missed meanwhile)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Add the trigger, then listen in the background."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(WATCH_SQL)
        finally:
            await conn.close()
        connected = asyncio.Event()
        self._task = asyncio.create_task(self._listen(connected), name="drill-job-watch")
        await connected.wait()

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _pulse(self, *_: object) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen(self, connected: asyncio.Event) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)  # PostgreSQL is down (a drill stopped it): try again
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(WATCH_CHANNEL, self._pulse)
                connected.set()
                self._pulse()
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=2)

    def changed(self) -> asyncio.Event:
        """An event set at the next change of any job (take it before looking at the jobs)."""
        return self._changed


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a process's fixed /metrics port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Place:
    """A guild on one shard, with its channel and the member who runs /imagine there."""

    shard: int
    guild: FakeGuild
    channel: FakeChannel
    user: FakeUser


@dataclass
class BotProcess:
    """One `bot run` process: its shard, config, log file and /metrics port."""

    shard: int
    config: Path
    log: Path
    metrics_port: int
    proc: asyncio.subprocess.Process | None = None
    runs: int = 0  # how many times it was started

    @property
    def pid(self) -> int:
        """The running process's id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of its log (every run's), for failure messages."""
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """The fakes, the database and the two bot processes of a scale-out drill."""

    folder: Path
    discord: FakeDiscord
    comfy: list[FakeComfyUI]
    database_url: str
    store: PostgresStore
    watch: JobWatch
    places: list[Place]
    bots: dict[int, BotProcess] = field(default_factory=dict)
    jobs: dict[int, Place] = field(default_factory=dict)  # every job the drill queued -> where

    # ------------------------------------------------------------------ processes

    async def start(self, shard: int) -> BotProcess:
        """Start the bot process of `shard` and wait until its shard is READY (its services started first:
        setup_hook runs before the gateway connects)."""
        bot = self.bots[shard]
        assert not bot.alive, f"the process of shard {shard} runs already"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY_IMAGINE_", "DISCORD_TOKEN"))}
        env["PYTHONPATH"] = str(ROOT)
        bot.runs += 1
        with bot.log.open("a", encoding="utf-8") as log:
            log.write(f"---------------- run {bot.runs} of shard {shard}\n")
            log.flush()
            bot.proc = await asyncio.create_subprocess_exec(
                *self.discord.pointed_command("bot", "run", "--config", str(bot.config)),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        ready = asyncio.ensure_future(self.discord.wait_until_shards_ready(SHARDS, [shard], timeout=START_S))
        exited = asyncio.ensure_future(bot.proc.wait())
        try:
            await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                raise AssertionError(
                    f"the bot of shard {shard} exited ({bot.proc.returncode}) before its shard was ready:\n"
                    + bot.log_tail()
                )
            ready.result()
        finally:
            ready.cancel()
            exited.cancel()
        return bot

    async def kill(self, shard: int) -> None:
        """SIGKILL the process of `shard` (no goodbye: its leases run out, its shard drops)."""
        bot = self.bots[shard]
        assert bot.proc is not None
        bot.proc.send_signal(signal.SIGKILL)
        await bot.proc.wait()
        await self.discord.wait_until_shard_offline(shard, SHARDS, timeout=10)

    async def stop(self, shard: int) -> None:
        """SIGTERM the process of `shard` and wait until it exits 0 (it hands its backends over at once)."""
        bot = self.bots[shard]
        assert bot.proc is not None
        pid = bot.pid
        bot.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(bot.proc.wait(), timeout=30)
        assert code == 0, f"the bot of shard {shard} exited {code} on SIGTERM:\n{bot.log_tail()}"
        # Released on the way out, not left to expire (the next holder re-attaches at once).
        held = [name for name, holder in (await self.holders()).items() if holder == pid]
        assert not held, f"the bot of shard {shard} exited still holding {held}:\n{bot.log_tail()}"
        await self.discord.wait_until_shard_offline(shard, SHARDS, timeout=10)

    async def close(self) -> None:
        """Kill whatever still runs."""
        for bot in self.bots.values():
            if bot.alive:
                assert bot.proc is not None
                bot.proc.kill()
                await bot.proc.wait()

    # ------------------------------------------------------------------ what members do

    async def imagine(self, place: Place, prompt: str) -> int:
        """Run /imagine in the place's channel; return the job its status message shows."""
        handle = await self.discord.slash_command(
            "imagine", {"prompt": prompt}, user=place.user, channel=place.channel
        )
        call = await handle.response(timeout=10)
        assert call.ok, call.response
        status = handle.original()
        assert status is not None
        job_id = job_id_of(status)
        self.jobs[job_id] = place
        return job_id

    async def press(self, place: Place, message: StoredMessage, custom_id: str) -> int:
        """Press a button under a result; return the job it queued (read from the status message it posted)."""
        since = self.discord.mark()
        handle = await self.discord.click(message, custom_id, user=place.user)
        call = await handle.response(timeout=10)
        assert call.ok, call.response
        await self.discord.wait_until(
            lambda: bool(self.discord.calls_to(SEND_ROUTE, since=since)), timeout=10
        )
        post = self.discord.calls_to(SEND_ROUTE, since=since)[0]
        assert post.ok, post.response
        job_id = job_id_of(self.discord.message(int(post.response["id"])))
        self.jobs[job_id] = place
        return job_id

    # ------------------------------------------------------------------ what the drill observes

    def results_of(self, job_id: int) -> list[StoredMessage]:
        """Every message posted anywhere (deleted since or not) that carries the job's result: an image
        with the job's follow-up buttons."""
        return [
            m
            for m in self.discord.world.messages.values()
            if m.attachments and any(follow_up_job(i) == job_id for i in m.custom_ids())
        ]

    def status_of(self, job_id: int) -> StoredMessage | None:
        """The job's status message (the first message naming it in its Cancel button)."""
        channel = self.jobs[job_id].channel
        for message in sorted(self.discord.world.messages.values(), key=lambda m: m.id):
            if message.channel_id != channel.id:
                continue
            with contextlib.suppress(AssertionError):
                if not message.attachments and job_id_of(message) == job_id:
                    return message
        return None

    def shown(self, job_id: int) -> bool:
        """Whether the job's result is posted and its status message deleted (the presenter deletes it
        after recording the result, so the job is then shown for good)."""
        status = self.status_of(job_id)
        return bool(self.results_of(job_id)) and status is not None and status.deleted

    async def wait_jobs(
        self, job_ids: list[int], condition: Callable[[Job], bool], *, timeout: float = 30.0
    ) -> list[Job]:
        """Wait until `condition` holds for every job (read from the database at each change of a job)."""
        jobs: list[Job | None] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self.watch.changed()
                    jobs = [await self.store.get(job_id) for job_id in job_ids]
                    if all(job is not None and condition(job) for job in jobs):
                        return [job for job in jobs if job is not None]
                    await changed.wait()
        except TimeoutError:
            states = [(j.id, j.status.value, j.backend) if j else None for j in jobs]
            raise AssertionError(f"jobs still not so after {timeout}s: {states}\n{self.logs()}") from None

    async def wait_shown(self, job_ids: list[int], *, timeout: float = 30.0) -> None:
        """Wait (on the fake Discord's changes) until every job is shown."""
        try:
            await self.discord.wait_until(lambda: all(self.shown(j) for j in job_ids), timeout=timeout)
        except TimeoutError:
            missing = [j for j in job_ids if not self.shown(j)]
            states = {j: await self.store.get(j) for j in missing}
            raise AssertionError(
                f"jobs not shown within {timeout}s: "
                + ", ".join(
                    f"{j} ({s.status.value if s else 'missing'}, {s and s.backend})"
                    for j, s in states.items()
                )
                + "\n"
                + self.logs()
            ) from None

    def logs(self) -> str:
        """Every process's log tail."""
        return "\n".join(f"== shard {b.shard}\n{b.log_tail()}" for b in self.bots.values())

    async def holders(self) -> dict[str, int]:
        """Which process (pid) holds each backend's lease now, from the database."""
        leases = await self.store.backend_leases()
        return {name: int(lease.holder.split(":")[1]) for name, lease in leases.items()}

    async def metric(self, shard: int, name: str) -> float:
        """A sample of the process's /metrics (0.0 when absent), e.g. `discord_posts_total{...}`."""
        port = self.bots[shard].metrics_port
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        found = re.search(rf"^comfy_imagine_{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    async def healthz(self, shard: int) -> tuple[int, dict[str, Any]]:
        """The process's /healthz: (HTTP status, JSON body)."""
        port = self.bots[shard].metrics_port
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as r:
            return r.status, await r.json()

    async def assert_each_job_done_once(self) -> list[Job]:
        """The end of every drill: every job queued completed exactly once and nothing was lost.

        - each job is COMPLETED in the database, and the database has no job the drill did not queue;
        - its result is one message, in its own channel (never posted twice, not even deleted since), with
          its image and buttons, mentioning its owner, recorded as its result; its status message is gone;
        - its images are on disk;
        - no ComfyUI prompt was posted or executed twice, across both backends, and each job's prompt
          ran exactly once.
        """
        jobs = []
        for job_id, place in sorted(self.jobs.items()):
            job = await self.store.get(job_id)
            assert job is not None, f"job {job_id} is lost"
            assert job.status is JobStatus.COMPLETED, f"job {job_id} is {job.status.value}: {job.error}"
            results = self.results_of(job_id)
            assert len(results) == 1, (
                f"job {job_id}: {len(results)} result messages: {[m.id for m in results]}"
            )
            (result,) = results
            assert result.channel_id == place.channel.id, f"job {job_id}: its result is in another channel"
            assert not result.deleted, f"job {job_id}: its result message was deleted"
            assert job.result_message_id == result.id, (job_id, job.result_message_id, result.id)
            assert place.user in result.mentions, f"job {job_id}: the result does not mention its owner"
            status = self.status_of(job_id)
            assert status is not None and status.deleted, f"job {job_id}: its status message stays"
            outputs = await self.store.outputs(job_id)
            missing = await asyncio.to_thread(_missing, [o.path for o in outputs])
            assert outputs and not missing, f"job {job_id}: images missing: {missing}"
            jobs.append(job)
        for place in self.places:
            stored = {job.id for job in await self.store.list_guild_jobs(place.guild.id)}
            extra = stored - set(self.jobs)
            assert not extra, f"guild {place.guild.name} has jobs the drill never queued: {sorted(extra)}"
        posted = Counter(
            body.get("prompt_id")
            for comfy in self.comfy
            for body in comfy.received_bodies
            if isinstance(body, dict)
        )
        executed = Counter(prompt for comfy in self.comfy for prompt in comfy.executed_prompt_ids)
        assert not [p for p, n in posted.items() if n > 1], f"prompts posted twice: {posted}"
        assert not [p for p, n in executed.items() if n > 1], f"prompts executed twice: {executed}"
        assert {job.prompt_id for job in jobs} <= set(executed), "a job's prompt never ran"
        return jobs


@asynccontextmanager
async def running_cluster(
    folder: Path, databases: Databases, *, lease_s: float = 1.0, step_time: float = 0.005
) -> AsyncIterator[Cluster]:
    """The fakes (Discord with a guild on each of two shards, two ComfyUIs), a new PostgreSQL database
    reached over TCP, and a config per shard; no process runs yet (`cluster.start(shard)`). Everything is
    stopped and dropped afterwards."""
    name, _ = await databases.create()
    url = databases.server.tcp_url(name)
    try:
        async with contextlib.AsyncExitStack() as stack:
            comfy = [await stack.enter_async_context(FakeComfyUI(step_time=step_time)) for _ in range(2)]
            for fake in comfy:
                fake.wait_timeout = 30
            discord = await stack.enter_async_context(FakeDiscord())
            places = [Place(0, discord.guild, discord.channel, discord.user)]
            guild = discord.add_guild("Shard One", shard=(1, SHARDS))
            user = discord.add_user("carol", global_name="Carol")
            discord.add_member(guild, user)
            places.append(Place(1, guild, discord.add_channel(guild, "art"), user))
            store = await PostgresStore.open(url)  # migrates the new database
            stack.push_async_callback(store.close)
            watch = JobWatch(url)
            await watch.start()
            stack.push_async_callback(watch.close)
            cluster = Cluster(folder, discord, comfy, url, store, watch, places)
            stack.push_async_callback(cluster.close)
            for shard in range(SHARDS):
                config = folder / f"shard{shard}.toml"
                port = free_port()
                config.write_text(
                    CONFIG.format(
                        token=discord.token,
                        shard_count=SHARDS,
                        shard=shard,
                        database=url,
                        gpu0=comfy[0].url,
                        gpu1=comfy[1].url,
                        lease_s=lease_s,
                        metrics_port=port,
                    ),
                    encoding="utf-8",
                )
                cluster.bots[shard] = BotProcess(shard, config, folder / f"shard{shard}.log", port)
            yield cluster
    finally:
        await databases.drop(name)


def _missing(paths: list[str]) -> list[str]:
    return [path for path in paths if not os.path.isfile(path)]
