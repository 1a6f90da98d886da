"""Shows jobs as they move: edits each status message with throttled progress, then posts the result as a new
message that notifies its owner and deletes the status message (failures and cancellations are edited in).

One task reads the event bus and hands each event to its job's tracker; each tracker edits its own message
in its own task, so a slow edit never holds up another message. A tracker keeps only the newest state:
progress waits until `edit_interval_s` has passed since the message's last edit, while state changes
(queued position, started, finished) are edited as soon as the previous edit is done. Edits go through the
channel message with the bot token, never the interaction webhook, whose token dies after 15 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from bot.events import Cancelled, Completed, Failed, JobEvent, Subscription
from bot.job_service import JobService, QueuedJob
from bot.jobs import Job, JobKind, JobStatus
from bot.reasons import Failure
from cogs._buttons import cancel_view, follow_up_job, grid_view, upscale_view
from cogs._edit_budget import EditBudget, EditPriority
from cogs._failure_text import failure_text
from cogs._messages import result_headline
from cogs._render import (
    NO_MENTIONS,
    StatusState,
    cancelled_embed,
    failed_embed,
    headline,
    result_filename,
    status_embed,
    status_text,
)
from cogs._tracker import MessageRef, Tracker
from comfy.images import ImageError, fit_to_limit

if TYPE_CHECKING:
    from bot.imagine_bot import ImagineBot

log = logging.getLogger(__name__)

# Discord's window for message edits in one channel (with a little margin for clock skew).
CHANNEL_EDIT_WINDOW_S = 5.1

T = TypeVar("T")

ATTACH_WAIT_S = 30.0  # how long a new job's events wait for the command to post its status message
FIT_ATTEMPTS = 4  # re-encodings tried when Discord still finds an upload too large
MAX_REMEMBERED = 512
DEFAULT_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
# Results Discord refused (an outage outlasting discord.py's retries) are offered again this often, once
# they have been finished this long (so a result being shown right now is never taken for one).
RETRY_UNDELIVERED_S = 300.0
UNDELIVERED_SETTLED_S = 60.0
# Messages after a re-offered job's status message searched for a result an earlier run posted.
POSTED_LOOKBACK = 50


@dataclass(frozen=True, slots=True)
class _Attached:
    """A status message the command posted (None: it could not post one), and the state it shows."""

    ref: MessageRef | None
    shown: StatusState | None


class _TooLarge(Exception):
    """An image that stays over the upload limit after every re-encoding."""


@contextlib.contextmanager
def _counted(record: Callable[[str, str], None], purpose: str) -> Iterator[None]:
    """Count one Discord request for the metrics: ok, not_found (the message is gone) or error."""
    try:
        yield
    except discord.NotFound:
        record(purpose, "not_found")
        raise
    except discord.HTTPException:
        record(purpose, "error")
        raise
    record(purpose, "ok")


def _shows_result(message: discord.Message, job_id: int) -> bool:
    """Whether a message carries a job's result: an attachment, and the job's follow-up buttons."""
    ids = [
        getattr(item, "custom_id", None)
        for row in message.components
        for item in getattr(row, "children", ())
    ]
    return bool(message.attachments) and any(follow_up_job(i) == job_id for i in ids if i)


def _shown_key(state: StatusState) -> tuple[str, bytes | None]:
    return status_text(state), state.preview


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
        self._upload_limits: dict[int, int] = {}
        self._retry_task: asyncio.Task[None] | None = None
        # Jobs whose result cannot be posted for a lasting reason (too large, channel gone or forbidden):
        # not offered again until the next start.
        self._undeliverable: set[int] = set()
        # Results offered again (catch_up): an earlier run may have posted them without recording it.
        self._reoffered: set[int] = set()

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
        if limit:
            self._upload_limits[guild_id] = limit

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
            with _counted(self.metrics.discord_post, "status"):
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
            with _counted(self.metrics.discord_post, "status"):
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
                    await self._finish(job, tracker.ref, tracker.terminal)
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

    def _message(self, ref: MessageRef, guild_id: int) -> discord.PartialMessage:
        channel = self.bot.get_partial_messageable(ref.channel_id, guild_id=guild_id)
        return channel.get_partial_message(ref.message_id)

    async def _edit_status(self, job: Job, ref: MessageRef, state: StatusState) -> MessageRef | None:
        """Edit the status message; None once it is gone (deleted), so no more edits are tried."""
        files = [] if state.preview is None else [discord.File(io.BytesIO(state.preview), state.preview_name)]
        try:
            with _counted(self.metrics.discord_edit, "progress"):
                await self._message(ref, job.guild_id).edit(
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

    async def _finish(self, job: Job, ref: MessageRef | None, event: JobEvent) -> None:
        job = await self.service.get_job(job.id) or job
        if isinstance(event, Completed):
            await self._deliver_result(job, ref, event)
        elif isinstance(event, Failed):
            await self._deliver(
                job, ref, embeds=[failed_embed(failure_text(event.failure))], notify_if_gone=True
            )
        elif isinstance(event, Cancelled):
            await self._deliver(job, ref, embeds=[cancelled_embed()], notify_if_gone=False)

    async def _deliver_result(self, job: Job, ref: MessageRef | None, event: Completed) -> None:
        """Post the result as a new message that notifies its owner, record it, then delete the status
        message (in that order: a restart finds a job with a result message done, whatever happened after).

        If Discord refuses the new message, the result is edited into the status message instead.
        """
        path = event.grid_path or (event.paths[0] if event.paths else None)
        count = len(event.paths)
        try:
            if path is None:
                raise OSError("no image")
            data = await self.service.read_image(path)
        except (OSError, ValueError) as exc:
            log.warning("job %s finished but its image cannot be read: %s", job.id, exc)
            reason = "The images were made but can no longer be read from the bot's disk."
            await self._deliver(job, ref, embeds=[failed_embed(reason)], notify_if_gone=True)
            return
        view = grid_view(job.id, count) if count > 1 else upscale_view(job.id)
        reoffered = job.id in self._reoffered
        self._reoffered.discard(job.id)
        try:
            # Offered again after a restart: an earlier run may have posted it and stopped before recording it.
            delivered = await self._posted_before(job, ref) if reoffered else None
            if delivered is None:
                delivered = await self._post_result(job, ref, view, (data, count))
        except _TooLarge:
            self._undeliverable.add(job.id)
            reason = "The picture was made but is too large to upload in this server."
            await self._deliver(job, ref, embeds=[failed_embed(reason)], notify_if_gone=True)
            return
        if delivered is None:
            return  # Discord refused it everywhere: offered again later (see retry_undelivered)
        await self.service.record_result_message(job.id, delivered.channel_id, delivered.message_id)
        if ref is not None and ref != delivered:
            await self._delete_status(job, ref)

    async def _post_result(
        self, job: Job, ref: MessageRef | None, view: discord.ui.View, image: tuple[bytes, int]
    ) -> MessageRef | None:
        """Post the result in the job's channel; if Discord refuses it, edit it into the status message.
        Returns where it is shown, None when nowhere (raises _TooLarge when it cannot fit the upload limit)."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        content = result_headline(job)
        mentions = await self._mentions(job)
        reference = await self._reply_target(job)
        extra: dict[str, Any] = {} if reference is None else {"reference": reference}

        async def send(files: list[discord.File]) -> MessageRef:
            with _counted(self.metrics.discord_post, "result"):
                posted = await channel.send(
                    content=content, files=files, view=view, allowed_mentions=mentions, **extra
                )
            return MessageRef(posted.channel.id, posted.id)

        try:
            return await self._with_image(job, image, send)
        except discord.HTTPException as exc:
            refused = exc
        log.warning(
            "cannot post the result of job %s in channel %s: %s; editing it into its status message",
            job.id,
            job.channel_id,
            refused,
        )
        shown = None if ref is None else await self._edit_into(job, ref, content, [], view, image)
        if shown is None and isinstance(refused, discord.Forbidden | discord.NotFound):
            self._undeliverable.add(job.id)  # the channel is gone or closed to the bot
        return shown

    async def _deliver(
        self, job: Job, ref: MessageRef | None, *, embeds: list[discord.Embed], notify_if_gone: bool
    ) -> None:
        """Edit the status message into the job's end (failed, cancelled); if it is gone, post a new message
        that notifies the member (`notify_if_gone`)."""
        content = headline(job)
        if ref is not None and await self._edit_into(job, ref, content, embeds, None, None) is not None:
            return
        if not notify_if_gone:
            return
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            with _counted(self.metrics.discord_post, "result"):
                await channel.send(content=content, embeds=embeds, allowed_mentions=await self._mentions(job))
        except discord.HTTPException as exc:
            log.warning("cannot post the end of job %s in channel %s: %s", job.id, job.channel_id, exc)

    async def _edit_into(
        self,
        job: Job,
        ref: MessageRef,
        content: str,
        embeds: list[discord.Embed],
        view: discord.ui.View | None,
        image: tuple[bytes, int] | None,
    ) -> MessageRef | None:
        """Edit the status message into a final one (edits never notify); None when Discord refused it."""
        message = self._message(ref, job.guild_id)

        async def edit(files: list[discord.File]) -> None:
            await self.edits.acquire(ref.channel_id, EditPriority.RESULT)
            with _counted(self.metrics.discord_edit, "result"):
                await message.edit(
                    content=content, embeds=embeds, attachments=files, view=view, allowed_mentions=NO_MENTIONS
                )

        try:
            await self._with_image(job, image, edit)
        except discord.NotFound:
            log.info("the status message of job %s was deleted", job.id)
            return None
        except discord.HTTPException as exc:
            log.warning("cannot edit the status message of job %s into its end: %s", job.id, exc)
            return None
        return ref

    async def _delete_status(self, job: Job, ref: MessageRef) -> None:
        """Delete the status message once the result is shown elsewhere (a stale one only costs clutter)."""
        try:
            await self._message(ref, job.guild_id).delete()
        except discord.NotFound:
            pass  # the member deleted it already
        except discord.HTTPException as exc:
            log.warning("cannot delete the status message of job %s: %s", job.id, exc)

    async def _posted_before(self, job: Job, ref: MessageRef | None) -> MessageRef | None:
        """The result message an earlier run posted but never recorded (it stopped in between): a message
        of the bot after the status message, with the job's image and buttons. None if there is none."""
        if ref is None or self.bot.user is None:
            return None
        me = self.bot.user.id
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async for message in channel.history(limit=POSTED_LOOKBACK, after=discord.Object(ref.message_id)):
                if message.id > ref.message_id and message.author.id == me and _shows_result(message, job.id):
                    log.info("job %s: an earlier run posted its result (message %s)", job.id, message.id)
                    return MessageRef(message.channel.id, message.id)
        except discord.HTTPException as exc:
            log.info("job %s: cannot look for a result an earlier run posted: %s", job.id, exc)
        return None

    async def _mentions(self, job: Job) -> discord.AllowedMentions:
        """Whom a new message about the job may notify: its owner, unless they turned the ping off; never
        anyone else, whatever the prompt contains."""
        settings = await self.bot.services.settings.get_settings(job.user_id)
        if not settings.ping:
            return NO_MENTIONS
        return discord.AllowedMentions(
            everyone=False, users=[discord.Object(job.user_id)], roles=False, replied_user=False
        )

    async def _reply_target(self, job: Job) -> discord.MessageReference | None:
        """The result message of the image a follow-up started from, for the new result to reply to (as its
        status message did)."""
        if job.parent_job_id is None or job.kind is JobKind.REROLL:
            return None  # a fresh prompt, or a reroll (its parent is the image its grid started from)
        parent = await self.service.get_job(job.parent_job_id)
        if parent is None or parent.result_message_id is None or parent.result_channel_id != job.channel_id:
            return None
        return discord.MessageReference(
            message_id=parent.result_message_id,
            channel_id=parent.result_channel_id,
            guild_id=job.guild_id,
            fail_if_not_exists=False,
        )

    async def _with_image(
        self,
        job: Job,
        image: tuple[bytes, int] | None,
        send: Callable[[list[discord.File]], Awaitable[T]],
    ) -> T:
        """Send with the result image, re-encoded to fit the upload limit (smaller again if Discord says 413)."""
        if image is None:
            return await send([])
        data, count = image
        limit = self._upload_limit(job.guild_id)
        for _ in range(FIT_ATTEMPTS):
            try:
                encoded = await asyncio.to_thread(fit_to_limit, data, limit)
            except ImageError as exc:
                log.warning("job %s: %s", job.id, exc)
                break
            file = discord.File(io.BytesIO(encoded.data), result_filename(job, count, encoded.extension))
            try:
                return await send([file])
            except discord.HTTPException as exc:
                if exc.status != 413 and exc.code != 40005:
                    raise
                limit = max(1, int(len(encoded.data) * 0.7))
                log.info(
                    "job %s: %d bytes are over the upload limit; trying %d", job.id, len(encoded.data), limit
                )
        raise _TooLarge(f"job {job.id}: the image does not fit the upload limit")

    def _upload_limit(self, guild_id: int) -> int:
        known = self._upload_limits.get(guild_id)
        if known:
            return known
        guild = self.bot.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
