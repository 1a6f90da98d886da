"""Shows jobs as they move: edits each status message with throttled progress, then hands the job's end to
cogs._delivery (the result as a new message that notifies its owner; failures and cancellations edited in).

One task reads the event bus and hands each event to its job's tracker; each tracker edits its own message
in its own task, so a slow edit never holds up another message. A tracker keeps only the newest state:
progress waits until `edit_interval_s` has passed since the message's last edit, while state changes
(queued position, started, finished) are edited as soon as the previous edit is done. Edits go through the
channel message with the bot token, never the interaction webhook, whose token dies after 15 minutes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from bot.events import Cancelled, Failed, JobEvent, Subscription
from bot.job_service import JobService, QueuedJob
from bot.jobs import Job, JobStatus
from bot.reasons import Failure
from cogs._buttons import cancel_view
from cogs._delivery import ResultDelivery, counted, message_at
from cogs._edit_budget import EditBudget, EditPriority
from cogs._render import NO_MENTIONS, StatusState, status_embed
from cogs._tracker import MessageRef, Tracker
from cogs._words.jobs import headline

if TYPE_CHECKING:
    from bot.imagine_bot import ImagineBot

log = logging.getLogger(__name__)

# Discord's window for message edits in one channel (with a little margin for clock skew).
CHANNEL_EDIT_WINDOW_S = 5.1

ATTACH_WAIT_S = 30.0  # how long a new job's events wait for the command to post its status message
MAX_REMEMBERED = 512
# Results Discord refused (an outage outlasting discord.py's retries) are offered again this often, once
# they have been finished this long (so a result being shown right now is never taken for one).
RETRY_UNDELIVERED_S = 300.0
UNDELIVERED_SETTLED_S = 60.0


@dataclass(frozen=True, slots=True)
class _Attached:
    """A status message the command posted (None: it could not post one), and the state it shows."""

    ref: MessageRef | None
    shown: StatusState | None


def _shown_key(state: StatusState) -> tuple[str, bytes | None]:
    return state.text, state.preview


class Presenter:
    """Keeps every job's Discord message in step with the job.

    While the imagine extension is loaded it is the bot's `job_messages` (bot.imagine_bot.JobMessages):
    the buttons under jobs post the status messages of the jobs they queue through it. It shows only the
    jobs of guilds this process's shards hold (`ImagineBot.holds_guild`), whichever process runs them.
    """

    def __init__(
        self, bot: ImagineBot, service: JobService, *, interval: float, channel_edits_per_5s: int = 5
    ) -> None:
        self.bot = bot
        self.service = service
        self.interval = interval
        self.edits = EditBudget(channel_edits_per_5s, CHANNEL_EDIT_WINDOW_S)
        self.metrics = bot.services.metrics
        self._subscription: Subscription | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._trackers: dict[int, Tracker] = {}
        self._waiters: dict[int, asyncio.Future[_Attached]] = {}
        self._attached: OrderedDict[int, _Attached] = OrderedDict()
        self._retry_task: asyncio.Task[None] | None = None
        # Jobs whose result cannot be posted for a lasting reason (too large, channel gone or forbidden):
        # not offered again until the next start.
        self._undeliverable: set[int] = set()
        # Results offered again (catch_up): an earlier run may have posted them without recording it.
        self._reoffered: set[int] = set()
        self.delivery = ResultDelivery(bot, service, self.edits, self._undeliverable)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Subscribe to job events and start showing them."""
        self._subscription = self.bot.services.bus.subscribe()
        self.bot.add_listener(self._show_missed, "on_job_events_missed")
        self._pump_task = asyncio.create_task(self._pump(self._subscription), name="imagine-presenter")
        self._retry_task = asyncio.create_task(self._retry_loop(), name="imagine-retry-undelivered")

    async def stop(self) -> None:
        """Stop reading events and cancel the edits in progress."""
        self.bot.remove_listener(self._show_missed, "on_job_events_missed")
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        tasks = [t.task for t in self._trackers.values() if t.task is not None]
        for loop_task in (self._pump_task, self._retry_task):
            if loop_task is not None:
                tasks.append(loop_task)
        self._pump_task = self._retry_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for tracker in self._trackers.values():
            tracker.finish()  # nobody waits forever on a job this presenter no longer shows
        self._trackers.clear()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    # ------------------------------------------------------------------ what commands and buttons call

    def note_upload_limit(self, guild_id: int, limit: int | None) -> None:
        """Remember a guild's upload limit as an interaction reported it (`attachment_size_limit`)."""
        self.delivery.note_upload_limit(guild_id, limit)

    def status_message(self, job: Job, state: StatusState) -> dict[str, Any]:
        """The keyword arguments of a first status message (no attachments)."""
        return {
            "content": headline(job),
            "embed": status_embed(replace(state, preview=None)),
            "view": cancel_view(job.id),
            "allowed_mentions": NO_MENTIONS,
        }

    async def track(self, job: Job, channel_id: int, message_id: int | None, shown: StatusState) -> None:
        """Record the status message a command posted for a job (None: it could not post one)."""
        ref = None
        if message_id is not None:
            await self.service.record_status_message(job.id, channel_id, message_id)
            ref = MessageRef(channel_id, message_id)
        attached = _Attached(ref, shown)
        waiter = self._waiters.pop(job.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(attached)
            return
        self._attached[job.id] = attached
        while len(self._attached) > MAX_REMEMBERED:
            self._attached.popitem(last=False)

    async def post_status(self, queued: QueuedJob, *, reply_to: discord.Message | None = None) -> int | None:
        """Post a job's status message in its channel (in reply to `reply_to`); None if the bot cannot."""
        job = queued.job
        state = StatusState(position=queued.position)
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to is not None else None
        try:
            with counted(self.metrics.discord_post, "status"):
                if reference is not None:
                    message = await channel.send(**self.status_message(job, state), reference=reference)
                else:
                    message = await channel.send(**self.status_message(job, state))
        except discord.HTTPException as exc:
            log.warning("cannot post the status of job %s in channel %s: %s", job.id, job.channel_id, exc)
            return None
        await self.track(job, job.channel_id, message.id, state)
        return message.id

    async def post_status_followup(self, queued: QueuedJob, interaction: discord.Interaction[Any]) -> None:
        """Post a job's status message as an interaction followup (when the bot cannot post in the channel)."""
        job = queued.job
        state = StatusState(position=queued.position)
        message_id = None
        try:
            with counted(self.metrics.discord_post, "status"):
                message = await interaction.followup.send(**self.status_message(job, state), wait=True)
            message_id = message.id
        except discord.HTTPException as exc:
            log.warning("cannot post the status of job %s as a followup: %s", job.id, exc)
        await self.track(job, job.channel_id, message_id, state)

    async def catch_up(self, *, settled_s: float = 0.0) -> int:
        """Show finished jobs whose results were never posted (the bot stopped in between, Discord refused
        them, or their Completed event never came), finished at least `settled_s` ago; returns how many.

        A job whose tracker already has its ending is being shown and is left alone; one whose tracker
        still waits for it (its Completed was missed: another process ran it while the relay was away)
        gets it now."""
        events = await self.service.unshown_results(settled_s=settled_s)
        fresh = []
        for event in events:
            tracker = self._trackers.get(event.job_id)
            if (
                (tracker is None or tracker.terminal is None)
                and event.job_id not in self._undeliverable
                and self.bot.holds_guild(event.guild_id)
            ):
                fresh.append(event)
        self._reoffered.update(e.job_id for e in fresh)
        for event in fresh:
            self._route(event)
        if fresh:
            log.info("posting %d result(s) not shown yet", len(fresh))
        return len(fresh)

    async def _show_missed(self) -> None:
        """The event relay reconnected: endings other processes wrote meanwhile never reached this one.
        Show the results now rather than at the next retry of undelivered results (minutes away), and the
        failures and cancellations of the jobs whose messages still wait for their end."""
        await self.catch_up()
        for tracker in list(self._trackers.values()):
            if tracker.terminal is not None:
                continue
            job = await self.service.get_job(tracker.job_id)
            if job is None or not self.bot.holds_guild(job.guild_id):
                continue
            if job.status is JobStatus.FAILED:
                self._route(Failed(job.id, job.guild_id, failure=Failure.decode(job.error)))
            elif job.status is JobStatus.CANCELLED:
                self._route(Cancelled(job.id, job.guild_id))

    async def retry_undelivered(self) -> int:
        """Offer again the results Discord refused earlier (the loop calls it every few minutes)."""
        return await self.catch_up(settled_s=UNDELIVERED_SETTLED_S)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(RETRY_UNDELIVERED_S)
            try:
                await self.retry_undelivered()
            except Exception:
                log.exception("retrying undelivered results failed")

    async def wait_shown(self, job_id: int) -> None:
        """Wait until the bot is done showing a finished job (its result message is recorded)."""
        tracker = self._trackers.get(job_id)
        if tracker is not None:
            await tracker.wait_finished()

    # ------------------------------------------------------------------ events

    async def _pump(self, subscription: Subscription) -> None:
        while True:
            event = await subscription.get()
            if not self.bot.holds_guild(event.guild_id):
                continue  # the process holding the guild's shard shows it (it hears the event too)
            try:
                self._route(event)
            except Exception:
                log.exception("cannot show event %r", event)

    def _route(self, event: JobEvent) -> None:
        tracker = self._trackers.get(event.job_id)
        if tracker is None:
            tracker = self._trackers[event.job_id] = Tracker(event.job_id)
        tracker.apply(event)
        if tracker.task is None:
            tracker.task = asyncio.create_task(self._follow(tracker), name=f"imagine-job-{event.job_id}")

    async def _follow(self, tracker: Tracker) -> None:
        """Show the tracker's state until it is shown; the task ends when there is nothing more to edit
        (the next event starts another) or when the job's end is shown (the tracker goes)."""
        finished = False
        try:
            if not tracker.attached:
                job = await self.service.get_job(tracker.job_id)
                if (
                    job is None
                    or (job.status.is_terminal and tracker.terminal is None)
                    or job.result_message_id
                ):
                    finished = True  # an event about a job already shown, or deleted
                    return
                attached = await self._status_of(job)
                tracker.job, tracker.ref = job, attached.ref
                tracker.shown = _shown_key(attached.shown) if attached.shown is not None else None
                tracker.attached = True
            job = tracker.job
            assert job is not None
            loop = asyncio.get_running_loop()
            while tracker.dirty:
                if not tracker.urgent and tracker.last_edit is not None:
                    delay = tracker.last_edit + self.interval - loop.time()
                    if delay > 0:
                        await tracker.wait_urgent(delay)
                priority = EditPriority.STATE if tracker.urgent else EditPriority.PROGRESS
                tracker.dirty = tracker.urgent = False
                if tracker.terminal is not None:
                    finished = True
                    reoffered = tracker.job_id in self._reoffered
                    await self.delivery.finish(job, tracker.ref, tracker.terminal, reoffered=reoffered)
                    return
                ref = tracker.ref
                if ref is None or _shown_key(tracker.state) == tracker.shown:
                    continue
                # In a busy channel this waits; results go first, then state changes, then progress.
                if not await self._status_slot(tracker, ref.channel_id, priority):
                    continue  # the job ended meanwhile: its final edit comes next
                state = tracker.state  # the newest, after the wait
                tracker.ref = await self._edit_status(job, ref, state)
                tracker.shown = _shown_key(state)
                tracker.last_edit = loop.time()
        except asyncio.CancelledError:
            finished = True
            raise
        except Exception:
            finished = True
            log.exception("showing job %s failed", tracker.job_id)
        finally:
            # No await between the loop's last look at `dirty` and here: an event routed later starts a task.
            tracker.task = None
            if finished:
                self._reoffered.discard(tracker.job_id)
                tracker.finish()
                if self._trackers.get(tracker.job_id) is tracker:
                    del self._trackers[tracker.job_id]

    async def _status_slot(self, tracker: Tracker, channel_id: int, priority: EditPriority) -> bool:
        """Wait for the channel's edit budget; False when the job ended meanwhile (its request was dropped
        uncounted, so the final edit does not wait behind a status edit that no longer matters)."""
        slot = tracker.slot = self.edits.request(channel_id, priority)
        try:
            await slot
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if slot.cancelled() and task is not None and not task.cancelling():
                return False
            slot.cancel()
            raise
        finally:
            tracker.slot = None
        return tracker.terminal is None

    async def _status_of(self, job: Job) -> _Attached:
        """The job's status message: from the database, from the command that just posted it, or none."""
        attached = self._attached.pop(job.id, None)
        if job.status_message_id is not None and job.status_channel_id is not None:
            ref = MessageRef(job.status_channel_id, job.status_message_id)
            return _Attached(ref, attached.shown if attached is not None and attached.ref == ref else None)
        if attached is not None:
            return attached
        waiter = self._waiters[job.id] = asyncio.get_running_loop().create_future()
        timeout = max(0.0, ATTACH_WAIT_S - (time.time() - job.created_at))
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            log.info("job %s has no status message; its result will be posted as a new message", job.id)
            return _Attached(None, None)
        finally:
            if self._waiters.get(job.id) is waiter:
                del self._waiters[job.id]

    # ------------------------------------------------------------------ editing

    async def _edit_status(self, job: Job, ref: MessageRef, state: StatusState) -> MessageRef | None:
        """Edit the status message; None once it is gone (deleted), so no more edits are tried."""
        files = [] if state.preview is None else [discord.File(io.BytesIO(state.preview), state.preview_name)]
        try:
            with counted(self.metrics.discord_edit, "progress"):
                await message_at(self.bot, ref, job.guild_id).edit(
                    content=headline(job),
                    embeds=[status_embed(state)],
                    attachments=files,
                    view=cancel_view(job.id),
                    allowed_mentions=NO_MENTIONS,
                )
        except discord.NotFound:
            log.info("the status message of job %s was deleted", job.id)
            return None
        except discord.HTTPException as exc:
            log.warning("cannot edit the status message of job %s: %s", job.id, exc)
        return ref
