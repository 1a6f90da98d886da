"""What every fault drill asserts at the end: nothing was lost, nothing ran twice, and the member was told.

jobs = await settled(e2e)          # every job of the guild ended and the bot finished showing it
await assert_nothing_lost(e2e, jobs)  # each ending is visible in Discord; no prompt ran twice
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from bot.jobs import Job, JobStatus
from bot.reasons import Failure
from cogs._words.failures import failure_text
from tests.e2e import E2E, guild_jobs, shown
from tests.fakes.discord_models import StoredMessage


async def settled(e2e: E2E, *, count: int | None = None, limit_s: float = 20.0) -> list[Job]:
    """Wait (on job events, no polling) until the guild's jobs (`count` of them, if given) have all ended
    and the bot is done showing each; return them, fresh from the database."""
    subscription = e2e.services.bus.subscribe()
    try:
        async with asyncio.timeout(limit_s):
            while True:
                jobs = await guild_jobs(e2e)
                enough = bool(jobs) if count is None else len(jobs) >= count
                if enough and all(job.status.is_terminal for job in jobs):
                    break
                await subscription.get()
            for job in jobs:
                await shown(e2e, job.id)
    finally:
        subscription.close()
    return await guild_jobs(e2e)


def visible_messages(e2e: E2E, job: Job) -> list[StoredMessage]:
    """The live (not deleted) messages in the job's channel that are about this job: its status message,
    its result message, and any message whose buttons or text name it."""
    fake = e2e.discord
    ids = {job.status_message_id, job.result_message_id} - {None}
    found = []
    for message in fake.world.messages.values():
        if message.deleted or message.channel_id != job.channel_id:
            continue
        # custom ids are ci:<action>:<job id>[:<image>]
        names_job = any(custom_id.split(":")[2:3] == [str(job.id)] for custom_id in message.custom_ids())
        if message.id in ids or names_job:
            found.append(message)
    return found


def told(message: StoredMessage, text: str) -> bool:
    """Whether the message shows `text` (in its content or an embed)."""
    parts = [message.content] + [
        str(e.get("description", "")) + str(e.get("title", "")) for e in message.embeds
    ]
    return any(text in part for part in parts)


async def assert_nothing_lost(e2e: E2E, jobs: list[Job]) -> None:
    """Every job ended; a completed job's images are on disk and its result (image and buttons) is in
    Discord; a failed job's reason is shown to the member; no ComfyUI prompt was executed twice."""
    assert jobs, "no jobs"
    for job in jobs:
        assert job.status.is_terminal, f"job {job.id} is still {job.status}"
        if job.status is JobStatus.COMPLETED:
            assert job.result_message_id is not None, (
                f"job {job.id} completed but its result was never posted"
            )
            result = e2e.discord.message(job.result_message_id)
            assert not result.deleted and result.attachments, f"job {job.id}: result message has no image"
            assert any(":upscale" in i or ":vary" in i for i in result.custom_ids()), result.custom_ids()
            outputs = await e2e.services.store.outputs(job.id)
            paths = [o.path for o in outputs]
            missing = await asyncio.to_thread(_missing, paths)
            assert outputs and not missing, f"job {job.id}: images missing: {missing}"
        elif job.status is JobStatus.FAILED:
            assert job.error, f"job {job.id} failed without a reason"
            reason = failure_text(Failure.decode(job.error))
            shown_to_member = [m for m in visible_messages(e2e, job) if told(m, reason[:60])]
            assert shown_to_member, f"job {job.id} failed ({job.error!r}) but no message says so"
    executed = Counter(prompt for comfy in e2e.comfy for prompt in comfy.executed_prompt_ids)
    twice = [prompt for prompt, times in executed.items() if times > 1]
    assert not twice, f"prompts executed more than once: {twice}"


def _missing(paths: list[str]) -> list[str]:
    return [path for path in paths if not os.path.isfile(path)]
