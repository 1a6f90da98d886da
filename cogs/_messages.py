"""The words members read: each refusal (by reason and where), and the answers to buttons and commands.

The services under bot/ raise and return facts only (bot.errors.MemberError, Cancellation, JobInfo, ...).
"""

from __future__ import annotations

import math
from enum import Enum, auto
from typing import Final, assert_never

from bot.errors import MemberError, Reason
from bot.job_service import Cancellation, JobInfo, QueuedJob
from bot.jobs import Job, JobKind, JobStatus, LimitExceeded, LimitKind
from bot.queue_service import QueueEntry, QueuePage, StatusReport, excerpt
from cogs._param_words import param_error_text, render_error_text
from cogs._render import shown_prompt, what_it_is
from comfy.actions import REROLL, Action, action_named
from comfy.params import ParamError, format_request
from comfy.render import RenderError
from comfy.workflow import BLEND_MIN_IMAGES

CHOICE_LABEL_CHARS: Final = 100  # Discord's limit for an autocomplete choice name
_SHOWN_CHANNELS: Final = 10
_SHOWN_MODELS: Final = 15
_MB: Final = 1_048_576
_GIB: Final = 1024**3
DM_PROMPT_CHARS: Final = 1200  # of the prompt in a ✉️ DM (2000 in all); a longer one also comes as a file
_DM_NEGATIVE_CHARS: Final = 400

# Refusals of the cogs themselves (nothing reached a service).
IMAGINE_GUILD_ONLY: Final = "/imagine only works in a server channel, not in direct messages."
BUTTONS_GUILD_ONLY: Final = "These buttons only work in a server."
COMMAND_GUILD_ONLY: Final = "This command works in a server, not in direct messages."
QUEUE_GUILD_ONLY: Final = "/queue works in a server, not in direct messages."
NOT_YOUR_QUEUE: Final = "Only the person who ran /queue can turn its pages. Run /queue to see your own."
NOT_YOUR_PANEL: Final = "This settings panel belongs to someone else. Run /settings to open your own."

# /settings: whether a member's finished images mention (notify) them.
PING_FIELD: Final = "Ping me when an image is ready"
PING_OPTION: Final = "Mention me in the message with my finished images (on unless you turn it off)"

# /settings: Remix mode.
REMIX_FIELD: Final = "Remix"
REMIX_OPTION: Final = "Remix mode: V, 🔄, Vary, Zoom Out and pan buttons first let you edit the prompt"

# The modal a follow-up opens to ask for its prompt (Remix, Custom Zoom), and the refusal of its text.
PROMPT_LABEL: Final = "Prompt and parameters"
REMIX_HINT: Final = "Change anything you like; the new job starts when you submit."
CUSTOM_ZOOM_HINT: Final = "Set --zoom from 1 to 2 (how far to zoom out) and describe the wider scene."
TYPED_TEXT_TITLE: Final = "What you wrote, to copy and fix"
_MODAL_TITLE_CHARS: Final = 45  # Discord's limit for a modal's title

STATUS_WORDS: Final = {
    JobStatus.QUEUED: "waiting",
    JobStatus.SUBMITTED: "starting",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
# "Job #42 has ...": how far a job got, for a member who wanted something from it.
_HAS_ENDED: Final = {
    JobStatus.QUEUED: "not started",
    JobStatus.SUBMITTED: "not finished",
    JobStatus.RUNNING: "not finished",
    JobStatus.COMPLETED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "been cancelled",
}


class Where(Enum):
    """Where the member acted, for the refusals and answers worded differently there."""

    ANY = auto()  # /imagine, and anything without words of its own
    FOLLOW_UP = auto()  # a button that makes a new job from a finished one (U, V, reroll, zoom, pan, ...)
    INFO = auto()  # the Info button
    CANCEL_BUTTON = auto()  # the Cancel button under a status message
    CANCEL_COMMAND = auto()  # /cancel, where the member typed or picked the job
    SETTINGS = auto()  # the /settings panel


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def limit_text(exc: LimitExceeded) -> str:
    """What a member reads when a `[limits]` cap refused their command: what is allowed, and what to do."""
    cap, asked, counted = exc.allowed, exc.requested, exc.current
    if exc.kind is LimitKind.MAX_JOBS_PER_COMMAND:
        return f"One command can make at most {_plural(cap, 'job')}; this one asked for {asked}."
    if exc.kind is LimitKind.PER_USER_PER_MINUTE:
        retry = max(1, math.ceil(exc.retry_after_s or 0.0))
        return f"Slow down: at most {_plural(cap, 'command')} a minute. Try again in {retry} s."
    if exc.kind is LimitKind.PER_USER_ACTIVE:
        if counted >= cap:
            return (
                f"You already have {_plural(counted, 'job')} waiting or running; "
                f"the limit is {cap}. Wait for one to finish."
            )
        return (
            f"You have {_plural(counted, 'job')} waiting or running and this command adds "
            f"{asked}; the limit is {cap}. Wait for one to finish, or ask for fewer."
        )
    if counted >= cap:
        return (
            f"This server's queue is full: {_plural(counted, 'job')} waiting, "
            f"the limit is {cap}. Try again once some have started."
        )
    return (
        f"This server's queue has room for {_plural(cap - counted, 'more job')} and "
        f"this command adds {asked}. Try again once some have started, or ask for fewer."
    )


def refusal_text(error: MemberError | ParamError | RenderError, where: Where = Where.ANY) -> str:
    """The words for a refusal: what was wrong, and what is allowed."""
    if isinstance(error, ParamError):
        return param_error_text(error)
    if isinstance(error, RenderError):
        return f"That can't be done: {render_error_text(error)}."
    return _member_error_text(error, where)


def _member_error_text(e: MemberError, where: Where) -> str:
    job = f"Job #{e.job_id}"
    match e.reason:
        case Reason.CHANNEL_NOT_ALLOWED:
            shown = ", ".join(f"<#{c}>" for c in e.channels[:_SHOWN_CHANNELS])
            more = " and others" if len(e.channels) > _SHOWN_CHANNELS else ""
            return f"Images can't be made in this channel. Use {shown}{more}."
        case Reason.BANNED_WORD:
            return (
                f"Your prompt contains `{_code(e.value or '')}`, a word this server does not allow. "
                "Remove it and try again."
            )
        case Reason.UNKNOWN_MODEL if where is Where.SETTINGS:
            return (
                f"There is no model called `{excerpt(e.value or '', 40)}`. Models you can use: "
                f"{', '.join(e.choices)}."
            )
        case Reason.UNKNOWN_MODEL:
            names = ", ".join(f"`{n}`" for n in e.choices[:_SHOWN_MODELS])
            return f"Unknown model `{_code((e.value or '')[:60])}`. Models you can use: {names}."
        case Reason.TOO_MANY_JOBS:
            return (
                f"This prompt makes {e.count} jobs (permutations × `--repeat`); "
                f"one command may make at most {e.allowed}. Use fewer options or a smaller `--repeat`."
            )
        case Reason.SAVED_DEFAULTS_CLASH:
            return (
                f"Your saved defaults ({', '.join(f'`{flag}`' for flag in e.choices)}) don't work with this "
                f"prompt: {param_error_text(e.param_error) if e.param_error else ''} Change them with /settings, "
                "or give your own in the prompt."
            )
        case Reason.IMAGE_TOO_LARGE:
            which = f"`{_code(e.value[:60])}`" if e.value else "The attached image"
            return (
                f"{which} is {(e.count or 0) / _MB:.1f} MB; at most {(e.allowed or 0) // _MB} MB are allowed."
            )
        case Reason.IMAGE_TOO_BIG:
            return f"The attached image is {e.width}×{e.height} pixels; at most {e.allowed} a side."
        case Reason.IMAGE_UNREADABLE:
            return "The attachment is not an image I can read; attach a PNG, JPEG or WebP."
        case Reason.NOT_AN_IMAGE:
            return f"`{(e.value or '')[:60]}` is not an image ({e.detail}); attach a PNG, JPEG or WebP."
        case Reason.IMAGE_DOWNLOAD_FAILED:
            return "The attached image could not be downloaded from Discord; try again."
        case Reason.BLEND_IMAGE_COUNT:
            return (
                f"/blend mixes {BLEND_MIN_IMAGES} to {e.allowed} images; you attached {e.count}. "
                "Attach each image in its own option (image1, image2, ...)."
            )
        case Reason.SOURCE_GONE:
            return "The image this starts from no longer exists."
        case Reason.UNKNOWN_ACTION:
            return f"Unknown button action `{e.value}`."
        case Reason.JOB_ELSEWHERE:
            return "That job belongs to another server."
        case Reason.JOB_UNFINISHED:
            return f"{job} has {_has_ended(e.status)}, so there are no images to use yet."
        case Reason.NO_SUCH_IMAGE if e.count:
            return f"{job} has no image {e.number}; it has {e.count}."
        case Reason.NO_SUCH_IMAGE:
            return "The images of this job are no longer kept."
        case Reason.IMAGE_DELETED:
            return "That image was deleted from the bot's storage; it can no longer be used."
        case Reason.JOB_MISSING if where is Where.FOLLOW_UP:
            return "That job no longer exists; its images were cleared from the bot's storage."
        case Reason.JOB_MISSING if where is Where.INFO:
            return "That job does not exist in this server (it may have been deleted)."
        case Reason.JOB_MISSING if where is Where.CANCEL_COMMAND:
            return f"There is no job #{e.job_id} in this server. Pick one from the list that appears as you type."
        case Reason.JOB_MISSING:
            return "That job does not exist in this server."
        case Reason.NOT_A_JOB:
            return (
                f"`{excerpt(e.value or '', 40) or ' '}` is not a job. Pick a job from the list that appears "
                "as you type, or give its number, like `#42`."
            )
        case Reason.NOT_YOURS if where is Where.CANCEL_COMMAND:
            return (
                f"{job} is not yours: you can cancel only your own jobs. "
                "Server admins (Manage Server) can cancel any job."
            )
        case Reason.NOT_YOURS:
            return f"Only <@{e.owner_id}> or an admin can cancel job #{e.job_id}."
        case Reason.ALREADY_ENDED if where is Where.CANCEL_COMMAND:
            word = STATUS_WORDS[e.status] if e.status is not None else "ended"
            return f"{job} has already ended ({word}); there is nothing to cancel."
        case Reason.ALREADY_ENDED:
            return f"{job} has already {_has_ended(e.status)}."
        case Reason.ENDED_JUST_NOW if where is Where.CANCEL_COMMAND:
            return f"{job} ended just now; there is nothing to cancel."
        case Reason.ENDED_JUST_NOW:
            return f"{job} had already ended."
        case Reason.UNKNOWN_STYLE:
            return (
                f"There is no style called `{excerpt(e.value or '', 40)}`. Styles you can use: "
                f"{', '.join(e.choices)}."
            )
        case Reason.NO_STYLES:
            return "There are no styles on this server."
        case Reason.NOT_AN_ASPECT:
            return (
                f"`{excerpt(e.value or '', 40)}` is not an aspect ratio; write two whole numbers like `16:9` "
                "or `2:3`."
            )
        case Reason.NEGATIVE_TOO_LONG:
            return f"The negative prompt is {e.count} characters long; at most {e.allowed} are allowed."
    assert_never(e.reason)


# ------------------------------------------------------------------------------------------ the command tree's refusals

SERVER_ONLY_COMMAND: Final = "This command only works in a server, not in direct messages."
CHECK_FAILED: Final = "You can't use this here."  # a check refused, without saying why


def cooldown_text(retry_after_s: float) -> str:
    """What a member reads when a command's cooldown refused them."""
    return f"Slow down: try again in {max(1, round(retry_after_s))} s."


def unexpected_error_text(reference: str) -> str:
    """What a member reads when something broke: the reference an admin looks up in the log."""
    return f"Something went wrong (ref {reference}); an admin can look it up in the log."


# ------------------------------------------------------------------------------------------ answers


def cancelled_text(done: Cancellation, *, where: Where, actor_id: int) -> str:
    """What the member who cancelled a job is told: briefly under the button, in full after /cancel."""
    job = done.job
    if where is Where.CANCEL_COMMAND:
        whose = "" if job.user_id == actor_id else " of another member"
        on = f" on {job.backend}" if done.was_in_flight and job.backend else ""
        return f"Cancelled job #{job.id}{whose} (it was {STATUS_WORDS[done.previous]}{on}): “{excerpt(job.prompt)}”"
    if done.previous is JobStatus.QUEUED:
        return f"Job #{job.id} is cancelled."
    return f"Job #{job.id} is being stopped on the image server; its message will say when it is cancelled."


def remix_value(on: bool) -> str:
    """The panel's line for Remix mode."""
    if on:
        return "on: V, 🔄, Vary, Zoom Out and the pan arrows first let you edit the prompt"
    return "off: follow-up buttons start at once (U never asks)"


def remix_button(on: bool) -> str:
    """The label of the panel's Remix toggle, saying what it is now."""
    return "Remix: on" if on else "Remix: off"


def remix_note(on: bool) -> str:
    """What /settings says after Remix was switched."""
    if on:
        return (
            "Remix is on: V, 🔄, Vary, Zoom Out and the pan arrows now first let you edit the prompt "
            "and parameters."
        )
    return "Remix is off: those buttons start at once again."


def prompt_modal_title(action: Action, number: int | None) -> str:
    """`Remix: Variations (Strong) of image 2`, or `Custom Zoom`: the title of a follow-up's prompt modal."""
    if action.zoom_from_prompt:
        return action.title[:_MODAL_TITLE_CHARS]
    of_image = f" of image {number}" if number else ""
    return f"Remix: {action.title}{of_image}"[:_MODAL_TITLE_CHARS]


def queued_text(action: Action, number: int | None, queued: QueuedJob) -> str:
    """`Queued: Upscale (2x) of image 2 (job #43, position 1 in this server).` for whoever pressed."""
    of_image = f" of image {number}" if number else ""
    where = f", position {queued.position} in this server" if queued.position else ""
    return f"Queued: {action.title}{of_image} (job #{queued.job.id}{where})."


def job_info_text(info: JobInfo) -> str:
    """Seed, parameters, model, size, backend and a link to what the job was made from (the Info button)."""
    job, request = info.job, info.request
    action = REROLL if job.kind is JobKind.REROLL else action_named(job.action)
    what = action.title if action is not None else "Blend" if job.kind is JobKind.BLEND else "Imagine"
    lines = [
        f"**Job #{job.id}** · {what} · by <@{job.user_id}>",
        f"**Parameters:** `{_code(format_request(request))}`",
        f"**Seed:** {request.seed}",
        f"**Model:** {request.model}",
        f"**Size:** {request.width}×{request.height} · {request.steps} steps · cfg {request.cfg:g}",
        f"**Backend:** {job.backend or 'not run yet'}",
    ]
    if job.parent_job_id is not None:
        image = f" image {job.parent_index + 1}" if job.parent_index is not None else ""
        link = message_link(info.parent) if info.parent is not None else None
        lines.append(f"**Made from:** job #{job.parent_job_id}{image}" + (f" · {link}" if link else ""))
    return "\n".join(lines)


def choice_label(job: Job) -> str:
    """`#42 · running · a lighthouse at du…`, at most 100 characters (an autocomplete choice name)."""
    head = f"#{job.id} · {STATUS_WORDS[job.status]}"
    text = excerpt(job.prompt, CHOICE_LABEL_CHARS - len(head) - 3)
    return f"{head} · {text}" if text else head


def message_link(job: Job) -> str | None:
    """A link to the message that shows the job (its result, else its status), None when it has none."""
    channel = job.result_channel_id or job.status_channel_id
    message = job.result_message_id or job.status_message_id
    if channel is None or message is None:
        return None
    return f"https://discord.com/channels/{job.guild_id}/{channel}/{message}"


# ------------------------------------------------------------------------------------------ /queue and /status

QUEUE_TITLE_MEMBER: Final = "Your jobs in this server"
QUEUE_EMPTY_ADMIN: Final = "Nothing is waiting or running in this server."
QUEUE_EMPTY_MEMBER: Final = "You have no jobs waiting or running here. Start one with /imagine."
NO_BACKENDS: Final = "No image servers are configured."
STATUS_QUEUE_FIELD: Final = "This server's queue"
STATUS_TODAY_FIELD: Final = "Today (since 00:00 UTC)"
ALL_BACKENDS_DOWN: Final = "New jobs wait in the queue and start when an image server is back."


def queue_title_admin(guild_name: str | None) -> str:
    """The title of an admin's /queue: the whole server's jobs (`guild_name` already cut to fit)."""
    return f"Queue in {guild_name}" if guild_name else "Queue in this server"


def queue_footer(page: QueuePage) -> str:
    """`Page 1/3 · 2 running · 5 waiting` under a /queue page."""
    return f"Page {page.page + 1}/{page.pages} · {page.in_flight} running · {page.waiting} waiting"


def queue_state(entry: QueueEntry, backend: str | None) -> str:
    """Where a /queue row's job is: `waiting, 3rd in line`, `running on gpu0 (45%)`, or its status.

    `backend` is the entry's backend as shown (escaped for Discord), None when it has none.
    """
    if entry.position is not None:
        return f"waiting, {_ordinal(entry.position)} in line"
    if not backend:
        return STATUS_WORDS[entry.status]
    state = f"{STATUS_WORDS[entry.status]} on {backend}"
    return state + f" ({entry.progress:.0%})" if entry.progress > 0 else state


def backends_title(report: StatusReport) -> str:
    """`Image servers: 1 of 2 up`, the title of /status."""
    return f"Image servers: {report.backends_up} of {len(report.backends)} up"


def backend_state(*, up: bool, paused: bool) -> str:
    """How a backend is, after its name in /status: `up`, `down` or `up, paused after a failed prompt`."""
    if paused:
        return "up, paused after a failed prompt"
    return "up" if up else "down"


def backend_version_text(version: str) -> str:
    """`ComfyUI 0.3.64`: the version a backend runs (as shown, escaped for Discord)."""
    return f"ComfyUI {version}"


def backend_load_text(in_flight: int, capacity: int) -> str:
    """`1/2 jobs`: a backend's jobs out of how many it takes at once."""
    return f"{in_flight}/{capacity} jobs"


def backend_memory_text(used: int, total: int, *, on_cpu: bool) -> str:
    """`VRAM 5.2 / 8.0 GiB` in use; a CPU-only server reports its RAM: `RAM (no GPU) 0.7 / 23.5 GiB`."""
    label = "RAM (no GPU)" if on_cpu else "VRAM"
    return f"{label} {max(0, used) / _GIB:.1f} / {max(0, total) / _GIB:.1f} GiB"


def last_error_text(error: str) -> str:
    """The line under a backend that admins read in /status (`error` as shown, escaped and cut)."""
    return f"last error: {error}"


def queue_counts_text(report: StatusReport) -> str:
    """`2 waiting · 1 running`: this server's queue in /status."""
    return f"{report.waiting} waiting · {report.in_flight} running"


def today_counts_text(report: StatusReport) -> str:
    """`5 done · 1 failed · 0 cancelled`: today's finished jobs in /status."""
    return (
        f"{report.completed_today} done · {report.failed_today} failed · {report.cancelled_today} cancelled"
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _has_ended(status: JobStatus | None) -> str:
    return _HAS_ENDED[status] if status is not None else "ended"


def _code(text: str) -> str:
    """Text made safe for Discord inline code."""
    return text.replace("`", "'")


# ------------------------------------------------------------------------------------ /settings: ping


def ping_value(ping: bool) -> str:
    """The panel's line for the ping setting."""
    return "yes: your finished images mention you" if ping else "no: your finished images name you silently"


def ping_button(ping: bool) -> str:
    """The label of the panel's ping toggle, saying what it is now."""
    return "Ping: on" if ping else "Ping: off"


def ping_note(ping: bool) -> str:
    """What the panel says right after the member changed the ping setting."""
    if ping:
        return "You'll be pinged when your images are ready."
    return "Your finished images will no longer ping you."


# ------------------------------------------------------------------------------------ results


def result_headline(job: Job) -> str:
    """The first line of a finished job's message, as Midjourney writes it: `**prompt --seed 7** - <@owner>`,
    `... - Image #2 <@owner>` for an upscale, `... - Variations (Strong) by <@owner>` for other follow-ups."""
    line = f"**{shown_prompt(job)}** -"
    owner = f"<@{job.user_id}>"
    action = REROLL if job.kind is JobKind.REROLL else action_named(job.action)
    if action is None:
        return f"{line} {owner}"
    if action.template == "upscale" and job.parent_index is not None:
        return f"{line} Image #{job.parent_index + 1} {owner}"
    return f"{line} {action.title} by {owner}"


def result_dm_text(info: JobInfo) -> str:
    """What ✉️ sends a member by DM: the job, its full prompt with every parameter and the seed, and a link
    to its message (at most 2000 characters)."""
    job, request = info.job, info.request
    what = what_it_is(job)
    lines = [
        f"**Job #{job.id}**" + (f" · {what}" if what else "") + f" · by <@{job.user_id}>",
        f"**Prompt:** `{_code(excerpt(format_request(request), DM_PROMPT_CHARS))}`",
        f"**Seed:** {request.seed} · **Model:** {request.model} · {request.width}×{request.height} · "
        f"{request.steps} steps · cfg {request.cfg:g} · {request.sampler}, {request.scheduler}",
    ]
    if request.negative:
        lines.append(f"**Negative:** `{_code(excerpt(request.negative, _DM_NEGATIVE_CHARS))}`")
    link = message_link(job)
    if link is not None:
        lines.append(link)
    return "\n".join(lines)
