"""The one error a member's request can end in: why the bot refuses, as facts; cogs/ choose the words."""

from __future__ import annotations

from enum import StrEnum

from bot.jobs import JobStatus
from comfy.param_error import ParamError


class Reason(StrEnum):
    """Why the bot refuses what a member asked; the fields of `MemberError` each reason fills are listed."""

    # /imagine: where and what may be drawn
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"  # channels: the channels images may be made in
    BANNED_WORD = "banned_word"  # value: the word
    UNKNOWN_MODEL = "unknown_model"  # value: the name given; choices: the model names
    TOO_MANY_JOBS = "too_many_jobs"  # count: jobs the prompt makes; allowed: per command
    SAVED_DEFAULTS_CLASH = "saved_defaults_clash"  # choices: the flags added; param_error: the refusal
    # an attached image (image prompt)
    IMAGE_TOO_LARGE = "image_too_large"  # count: its bytes; allowed: bytes; value: its name, if given
    IMAGE_TOO_BIG = "image_too_big"  # width, height: its pixels; allowed: pixels a side
    IMAGE_UNREADABLE = "image_unreadable"
    NOT_AN_IMAGE = "not_an_image"  # value: the file name; detail: the content type Discord gave
    IMAGE_DOWNLOAD_FAILED = "image_download_failed"
    SOURCE_GONE = "source_gone"  # the job or image a new job starts from was deleted meanwhile
    BLEND_IMAGE_COUNT = "blend_image_count"  # count: images given; allowed: the most a blend takes
    # follow-ups (buttons under a result)
    UNKNOWN_ACTION = "unknown_action"  # value: the action asked for
    JOB_ELSEWHERE = "job_elsewhere"  # job_id: a job of another server
    JOB_UNFINISHED = "job_unfinished"  # job_id, status: it has no images (yet)
    NO_SUCH_IMAGE = "no_such_image"  # job_id; number: the image asked for (1-based); count: images kept
    IMAGE_DELETED = "image_deleted"  # the image's file is gone from the output folder
    # jobs by number: cancel, info
    JOB_MISSING = "job_missing"  # job_id: no such job in this server (or no longer)
    NOT_A_JOB = "not_a_job"  # value: what was typed instead of a job number
    NOT_YOURS = "not_yours"  # job_id, owner_id: someone else's job, and the member is no admin
    ALREADY_ENDED = "already_ended"  # job_id, status: nothing to cancel
    ENDED_JUST_NOW = "ended_just_now"  # job_id: it ended between the check and the cancel
    # /settings
    UNKNOWN_STYLE = "unknown_style"  # value: the name given; choices: the style names
    NO_STYLES = "no_styles"  # value: the name given (the server has no styles at all)
    NOT_AN_ASPECT = "not_an_aspect"  # value: what was given
    NEGATIVE_TOO_LONG = "negative_too_long"  # count: its characters; allowed: characters


class MemberError(Exception):
    """Something a member asked that the bot refuses. It carries the reason and its facts, never a sentence:
    the words (in cogs/_words/refusals.py) depend on where the member asked. `str(exc)` is for logs."""

    def __init__(
        self,
        reason: Reason,
        *,
        job_id: int | None = None,
        owner_id: int | None = None,
        status: JobStatus | None = None,
        value: str | None = None,
        count: int | None = None,
        allowed: int | None = None,
        number: int | None = None,
        width: int | None = None,
        height: int | None = None,
        choices: tuple[str, ...] = (),
        channels: tuple[int, ...] = (),
        detail: str | None = None,
        param_error: ParamError | None = None,
    ) -> None:
        facts = {
            "job_id": job_id,
            "owner_id": owner_id,
            "status": status,
            "value": value,
            "count": count,
            "allowed": allowed,
            "number": number,
            "width": width,
            "height": height,
            "choices": choices or None,
            "channels": channels or None,
            "detail": detail,
            "param_error": str(param_error) if param_error is not None else None,
        }
        shown = ", ".join(f"{k}={v!r}" for k, v in facts.items() if v is not None)
        super().__init__(f"{reason.value} ({shown})" if shown else reason.value)
        self.reason = reason
        self.job_id = job_id
        self.owner_id = owner_id
        self.status = status
        self.value = value
        self.count = count
        self.allowed = allowed
        self.number = number
        self.width = width
        self.height = height
        self.choices = choices
        self.channels = channels
        self.detail = detail
        self.param_error = param_error
