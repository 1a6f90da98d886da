"""What tests build again and again: a hand-moved clock, jobs to enqueue and stored job records."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from bot.jobs import Job, JobKind, JobStatus, NewJob
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import ModelProfile

GUILD = 1001
# The model of the fake ComfyUI's checkpoint: tiny images, few steps, so a run takes milliseconds.
TINY = ModelProfile(name="tiny", checkpoint="random_sd15_tiny.safetensors", width=64, height=64, steps=4)


class FakeClock:
    """Wall-clock seconds that the test moves by hand, for anything that takes `clock: Callable[[], float]`.

    Each reading is 1 ms after the one before, so timestamps a store writes are unique and ordered; a
    `frozen` clock reads the same until the test sets `now` or calls `advance`.
    """

    def __init__(self, start: float = 1_700_000_000.0, *, frozen: bool = False) -> None:
        self.now = start
        self.frozen = frozen

    def __call__(self) -> float:
        if not self.frozen:
            self.now += 0.001
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds


def new_job(
    guild: int = GUILD,
    user: int = 1,
    prompt: str = "a lighthouse",
    kind: JobKind = JobKind.IMAGINE,
    **fields: Any,
) -> NewJob:
    """A job to enqueue as the store sees it: `request_json` stays "{}" unless given, in channel guild*10."""
    return NewJob(guild_id=guild, channel_id=guild * 10, user_id=user, kind=kind, prompt=prompt, **fields)


def imagine_job(
    prompt: str = "a lighthouse at dusk",
    *,
    guild: int = GUILD,
    user: int = 100,
    channel: int | None = None,
    models: Sequence[ModelProfile] = (TINY,),
    **fields: Any,
) -> NewJob:
    """A job as /imagine queues it, ready to render and run: the prompt parsed against `models` (the first
    is the default), in channel guild*10 unless given. Its random parts (the seed) follow guild and user,
    so a test runs the same every time."""
    context = ParseContext(models=models, rng=random.Random(guild * 1000 + user))
    request = parse_prompt(prompt, context)[0]
    return NewJob(
        guild_id=guild,
        channel_id=guild * 10 if channel is None else channel,
        user_id=user,
        kind=JobKind.IMAGINE,
        prompt=request.text,
        request_json=request_to_json(request),
        model=request.model,
        **fields,
    )


def job_record(**fields: Any) -> Job:
    """A stored job (queued, id 12, nothing run yet) with `fields` changed, for code that only reads jobs."""
    job = Job(
        id=12,
        batch_id=12,
        guild_id=1,
        channel_id=2,
        user_id=3,
        kind=JobKind.IMAGINE,
        action=None,
        parent_job_id=None,
        parent_index=None,
        prompt="a fox",
        request_json="{}",
        model="tiny",
        status=JobStatus.QUEUED,
        backend=None,
        prompt_id=None,
        progress=0.0,
        error=None,
        status_channel_id=None,
        status_message_id=None,
        result_channel_id=None,
        result_message_id=None,
        attempts=0,
        created_at=0.0,
        queued_at=0.0,
        submitted_at=None,
        started_at=None,
        finished_at=None,
    )
    return dataclasses.replace(job, **fields)
