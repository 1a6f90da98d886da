"""Why a job failed, went back to the queue or waits: facts for the store and the events (cogs word them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WaitReason(StrEnum):
    """Why a queued job is not moving."""

    NO_BACKEND = "no_backend"  # no image server is up (or every one is paused)


class FailureKind(StrEnum):
    """What ended a job, or sent it back to the queue; `Failure.detail` says which one where it can."""

    REFUSED = "refused"  # ComfyUI refused the workflow; detail: its validation message
    INVALID = "invalid"  # the workflow could not be built; detail: the template error
    # the follow-up cannot be made of its image; detail: the comfy.render.RenderError, encoded
    NOT_RENDERABLE = "not_renderable"
    PARENT_MISSING = "parent_missing"  # the image it starts from is no longer known
    PARENT_DELETED = "parent_deleted"  # ... and its file is gone from the bot's disk
    IMAGE_PROMPT_MISSING = "image_prompt_missing"  # the attached image is not (or no longer) recorded
    IMAGE_PROMPT_DELETED = "image_prompt_deleted"  # ... and its file is gone from the bot's disk
    UNEXPECTED_ANSWER = "unexpected_answer"  # ComfyUI answered something the bot does not understand
    BOT_ERROR = "bot_error"  # a bug in the bot (see the log)
    INTERRUPTED = "interrupted"  # stopped on the image server, not by the bot
    EXECUTION_FAILED = "execution_failed"  # detail: ComfyUI's `exception type: message`, shortened
    NO_IMAGE = "no_image"  # the prompt finished without an output image
    UNREADABLE_IMAGE = "unreadable_image"  # detail: why the image library cannot read it
    DISK_FULL = "disk_full"  # the images could not be saved: the disk is full
    NOT_SAVED = "not_saved"  # the images could not be saved for another reason (see the log)
    TIMED_OUT = "timed_out"  # number: the job timeout in seconds
    ATTEMPTS = "attempts"  # number: attempts made; cause: what ended the last one (with its detail)
    # Why an attempt ended without ending the job (it is re-queued, or fails as the cause of ATTEMPTS):
    BACKEND_UNAVAILABLE = "backend_unavailable"  # detail: the backend's name
    BACKEND_DOWN = "backend_down"  # down longer than the grace; detail: the backend's name
    UNREACHABLE = "unreachable"  # detail: the client's error
    LOST = "lost"  # the image server lost the prompt; detail: how, when known
    DOWNLOAD_FAILED = "download_failed"  # the images could not be downloaded
    BACKEND_GONE = "backend_gone"  # its backend is no longer configured
    NEVER_POSTED = "never_posted"  # the last run stopped before posting it
    OTHER = "other"  # free text written before failures were facts; detail: that text


@dataclass(frozen=True, slots=True)
class Failure:
    """A fact about a job's failure (or one failed attempt).

    Stored in the `error` column as `kind`, `kind/number`, `kind/number/cause`, each optionally followed by
    `: detail` (the detail belongs to the cause when there is one): `timed_out/900`,
    `attempts/3/backend_unavailable: gpu0`, `refused: Prompt outputs failed validation`.
    """

    kind: FailureKind
    detail: str = ""
    number: float | None = None
    cause: FailureKind | None = None

    def encode(self) -> str:
        """The form kept in the job's `error` column."""
        head = str(self.kind)
        if self.number is not None:
            head += "/" + _number_text(self.number)
        if self.cause is not None:
            head += f"/{self.cause}"
        return f"{head}: {self.detail}" if self.detail else head

    @classmethod
    def decode(cls, text: str | None) -> Failure:
        """The failure an `error` column holds; text that is not an encoded failure comes back as OTHER."""
        text = text or ""
        head, separator, detail = text.partition(": ")
        kind_text, *rest = head.split("/")
        if kind_text not in FailureKind._value2member_map_ or len(rest) > 2 or "\n" in head:
            return cls(FailureKind.OTHER, text)
        number: float | None = None
        cause: FailureKind | None = None
        for part in rest:
            if number is None and cause is None and _is_number(part):
                number = float(part)
            elif cause is None and part in FailureKind._value2member_map_:
                cause = FailureKind(part)
            else:
                return cls(FailureKind.OTHER, text)
        return cls(FailureKind(kind_text), detail if separator else "", number, cause)

    def __str__(self) -> str:
        return self.encode()


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class JobFailure(Exception):
    """Raised where a job cannot go on; the scheduler fails it with `failure`."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.encode())
        self.failure = failure
