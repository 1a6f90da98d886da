"""The buttons under job messages: their labels, the prompt modal of a follow-up, and what pressing answers
(`Queued: ...`, `Job #42 is cancelled.`; /cancel's answer too)."""

from __future__ import annotations

from typing import Final

from bot.job_service import Cancellation, QueuedJob
from bot.jobs import JobStatus
from bot.queue_service import excerpt
from cogs._words.jobs import STATUS_WORDS
from cogs._words.refusals import Where
from comfy.actions import Action

CANCEL_LABEL: Final = "Cancel"
INFO_LABEL: Final = "Info"

# The modal a follow-up opens to ask for its prompt (Remix, Custom Zoom).
PROMPT_LABEL: Final = "Prompt and parameters"
REMIX_HINT: Final = "Change anything you like; the new job starts when you submit."
CUSTOM_ZOOM_HINT: Final = "Set --zoom from 1 to 2 (how far to zoom out) and describe the wider scene."
_MODAL_TITLE_CHARS: Final = 45  # Discord's limit for a modal's title


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
