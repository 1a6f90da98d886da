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
from bot.queue_service import excerpt
from comfy.actions import REROLL, Action, action_named
from comfy.params import ParamError, format_request
from comfy.render import RenderError
from comfy.workflow import BLEND_MIN_IMAGES

CHOICE_LABEL_CHARS: Final = 100  # Discord's limit for an autocomplete choice name
_SHOWN_CHANNELS: Final = 10
_SHOWN_MODELS: Final = 15
_MB: Final = 1_048_576

# Refusals of the cogs themselves (nothing reached a service).
IMAGINE_GUILD_ONLY: Final = "/imagine only works in a server channel, not in direct messages."
BUTTONS_GUILD_ONLY: Final = "These buttons only work in a server."
COMMAND_GUILD_ONLY: Final = "This command works in a server, not in direct messages."
QUEUE_GUILD_ONLY: Final = "/queue works in a server, not in direct messages."
NOT_YOUR_QUEUE: Final = "Only the person who ran /queue can turn its pages. Run /queue to see your own."
NOT_YOUR_PANEL: Final = "This settings panel belongs to someone else. Run /settings to open your own."

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
        return str(error)  # the parser says what it could not read and what it takes
    if isinstance(error, RenderError):
        return f"That can't be done: {error}."
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
                f"prompt: {e.detail} Change them with /settings, or give your own in the prompt."
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


def _has_ended(status: JobStatus | None) -> str:
    return _HAS_ENDED[status] if status is not None else "ended"


def _code(text: str) -> str:
    """Text made safe for Discord inline code."""
    return text.replace("`", "'")
