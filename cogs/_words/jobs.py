"""How a job is named wherever it shows: its status in a word, what it is, its prompt, its headline, its link."""

from __future__ import annotations

from typing import Final

import discord

from bot.jobs import Job, JobKind, JobStatus
from comfy.actions import REROLL, action_named
from comfy.params import format_request, request_from_json

MAX_SHOWN_PROMPT: Final = 1500  # characters of the prompt in a headline (a message holds 2000)

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


def has_ended(status: JobStatus | None) -> str:
    """How far a job got, after `Job #42 has`: `not started`, `finished`, `been cancelled`, ..."""
    return _HAS_ENDED[status] if status is not None else "ended"


def what_it_is(job: Job) -> str | None:
    """The follow-up a job is, for its headline (`Upscale (2x) of image 2`); None for a fresh prompt."""
    if job.kind is JobKind.REROLL:
        return REROLL.title
    if job.kind is JobKind.BLEND:
        return f"Blend of {len(job.blend_images)} images"
    if job.action is None:
        return "Image prompt" if job.kind is JobKind.IMG2IMG else None
    action = action_named(job.action)
    if action is None:
        return job.action
    if job.parent_index is not None and action.names_image:
        return f"{action.title} of image {job.parent_index + 1}"
    return action.title


def shown_prompt(job: Job) -> str:
    """The job's prompt with its parameters and seed, as a member can paste it again."""
    try:
        text = format_request(request_from_json(job.request_json))
    except (ValueError, TypeError, KeyError):
        text = job.prompt
    if len(text) > MAX_SHOWN_PROMPT:
        text = text[: MAX_SHOWN_PROMPT - 1] + "…"
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def headline(job: Job) -> str:
    """`**prompt --seed 7** - <@user> (Upscale (2x) of image 2)`: the first line of every job message."""
    line = f"**{shown_prompt(job)}** - <@{job.user_id}>"
    what = what_it_is(job)
    return f"{line} ({what})" if what else line


def message_link(job: Job) -> str | None:
    """A link to the message that shows the job (its result, else its status), None when it has none."""
    channel = job.result_channel_id or job.status_channel_id
    message = job.result_message_id or job.status_message_id
    if channel is None or message is None:
        return None
    return f"https://discord.com/channels/{job.guild_id}/{channel}/{message}"
