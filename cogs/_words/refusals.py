"""The words of refusals: why the bot will not do what a member asked (by reason and where they asked), and
what they can do instead. The services under bot/ raise facts only (bot.errors.MemberError, LimitExceeded)."""

from __future__ import annotations

import math
from enum import Enum, auto
from typing import Final, assert_never

import discord

from bot.errors import MemberError, Reason
from bot.jobs import LimitExceeded, LimitKind
from bot.queue_service import excerpt
from cogs._words.jobs import STATUS_WORDS, has_ended
from cogs._words.params import param_error_text, render_error_text
from cogs._words.text import code, plural
from comfy.blend import BLEND_MIN_IMAGES
from comfy.params import ParamError
from comfy.render import RenderError

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

# What a member typed into a modal, shown again under the refusal of it.
TYPED_TEXT_TITLE: Final = "What you wrote, to copy and fix"


class Where(Enum):
    """Where the member acted, for the refusals and answers worded differently there."""

    ANY = auto()  # /imagine, and anything without words of its own
    FOLLOW_UP = auto()  # a button that makes a new job from a finished one (U, V, reroll, zoom, pan, ...)
    INFO = auto()  # the Info button
    CANCEL_BUTTON = auto()  # the Cancel button under a status message
    CANCEL_COMMAND = auto()  # /cancel, where the member typed or picked the job
    SETTINGS = auto()  # the /settings panel


def limit_text(exc: LimitExceeded) -> str:
    """What a member reads when a `[limits]` cap refused their command: what is allowed, and what to do."""
    cap, asked, counted = exc.allowed, exc.requested, exc.current
    if exc.kind is LimitKind.MAX_JOBS_PER_COMMAND:
        return f"One command can make at most {plural(cap, 'job')}; this one asked for {asked}."
    if exc.kind is LimitKind.PER_USER_PER_MINUTE:
        retry = max(1, math.ceil(exc.retry_after_s or 0.0))
        return f"Slow down: at most {plural(cap, 'command')} a minute. Try again in {retry} s."
    if exc.kind is LimitKind.PER_USER_ACTIVE:
        if counted >= cap:
            return (
                f"You already have {plural(counted, 'job')} waiting or running; "
                f"the limit is {cap}. Wait for one to finish."
            )
        return (
            f"You have {plural(counted, 'job')} waiting or running and this command adds "
            f"{asked}; the limit is {cap}. Wait for one to finish, or ask for fewer."
        )
    if counted >= cap:
        return (
            f"This server's queue is full: {plural(counted, 'job')} waiting, "
            f"the limit is {cap}. Try again once some have started."
        )
    return (
        f"This server's queue has room for {plural(cap - counted, 'more job')} and "
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
                f"Your prompt contains `{code(e.value or '')}`, a word this server does not allow. "
                "Remove it and try again."
            )
        case Reason.UNKNOWN_MODEL if where is Where.SETTINGS:
            return (
                f"There is no model called `{excerpt(e.value or '', 40)}`. Models you can use: "
                f"{', '.join(e.choices)}."
            )
        case Reason.UNKNOWN_MODEL:
            names = ", ".join(f"`{n}`" for n in e.choices[:_SHOWN_MODELS])
            return f"Unknown model `{code((e.value or '')[:60])}`. Models you can use: {names}."
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
            which = f"`{code(e.value[:60])}`" if e.value else "The attached image"
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
            return f"{job} has {has_ended(e.status)}, so there are no images to use yet."
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
            return f"{job} has already {has_ended(e.status)}."
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


def typed_text(text: str) -> str:
    """What a member typed into a modal, in a code block to copy; as plain text (escaped) when it holds a
    code fence itself."""
    return f"```\n{text}\n```" if "```" not in text else discord.utils.escape_markdown(text)
