"""What shows a finished job: its result's headline, the Info button's details and the ✉️ DM."""

from __future__ import annotations

from typing import Final

from bot.job_service import JobInfo
from bot.jobs import Job, JobKind
from bot.queue_service import excerpt
from cogs._words.jobs import message_link, shown_prompt, what_it_is
from cogs._words.text import code
from comfy.actions import REROLL, action_named
from comfy.params import format_request

DM_PROMPT_CHARS: Final = 1200  # of the prompt in a ✉️ DM (2000 in all); a longer one also comes as a file
_DM_NEGATIVE_CHARS: Final = 400


def result_headline(job: Job) -> str:
    """The first line of a finished job's message, as Midjourney writes it: `**prompt --seed 7** - <@owner>`,
    `... - Image #2 <@owner>` for an upscale, `... - Variations (Strong) by <@owner>` for other follow-ups."""
    line = f"**{shown_prompt(job)}** -"
    owner = f"<@{job.user_id}>"
    if job.kind is JobKind.BLEND:  # Midjourney names a /blend result like a follow-up
        return f"{line} Blend of {len(job.blend_images)} images by {owner}"
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
        f"**Prompt:** `{code(excerpt(format_request(request), DM_PROMPT_CHARS))}`",
        f"**Seed:** {request.seed} · **Model:** {request.model} · {request.width}×{request.height} · "
        f"{request.steps} steps · cfg {request.cfg:g} · {request.sampler}, {request.scheduler}",
    ]
    if request.negative:
        lines.append(f"**Negative:** `{code(excerpt(request.negative, _DM_NEGATIVE_CHARS))}`")
    link = message_link(job)
    if link is not None:
        lines.append(link)
    return "\n".join(lines)


def job_info_text(info: JobInfo) -> str:
    """Seed, parameters, model, size, backend and a link to what the job was made from (the Info button)."""
    job, request = info.job, info.request
    action = REROLL if job.kind is JobKind.REROLL else action_named(job.action)
    what = action.title if action is not None else "Blend" if job.kind is JobKind.BLEND else "Imagine"
    lines = [
        f"**Job #{job.id}** · {what} · by <@{job.user_id}>",
        f"**Parameters:** `{code(format_request(request))}`",
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
