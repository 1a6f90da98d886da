"""Why a job failed or was cancelled, in a member's words (the scheduler records only the facts)."""

from __future__ import annotations

from typing import Final, assert_never

from bot.reasons import Failure, FailureKind
from cogs._words.params import render_error_text
from comfy.render import RenderError

_SAVE_FAILED = "The image was made but "
FAILED_WITHOUT_REASON: Final = "The job failed."
CANCELLED_TEXT: Final = "🚫 Cancelled."
# The job finished, but its result cannot be shown: read back from storage, or uploaded.
IMAGES_UNREADABLE: Final = "The images were made but can no longer be read from the bot's disk."
TOO_LARGE_TO_UPLOAD: Final = "The picture was made but is too large to upload in this server."


def failed_text(reason: str) -> str:
    """What a failed job's message says: `❌ **Failed:** ` and why (`reason` as failure_text words it)."""
    return f"❌ **Failed:** {reason}"


def failure_text(failure: Failure) -> str:
    """Why a job failed, for the member who asked."""
    kind, detail = failure.kind, failure.detail
    match kind:
        case FailureKind.REFUSED:
            return f"The image server refused this job: {detail}"
        case FailureKind.INVALID | FailureKind.UNREACHABLE | FailureKind.OTHER:
            return detail
        case FailureKind.NOT_RENDERABLE:
            error = RenderError.decode(detail)
            return render_error_text(error) if error is not None else detail
        case FailureKind.PARENT_MISSING:
            return "the image this job starts from no longer exists"
        case FailureKind.PARENT_DELETED:
            return "the image this job starts from was deleted from the bot's disk"
        case FailureKind.IMAGE_PROMPT_MISSING:
            return "the attached image of this job is missing"
        case FailureKind.IMAGE_PROMPT_DELETED:
            return "the attached image was deleted from the bot's disk"
        case FailureKind.UNEXPECTED_ANSWER:
            return "The image server answered something unexpected; an admin can see the log."
        case FailureKind.BOT_ERROR:
            return "Something went wrong in the bot; an admin can see the log."
        case FailureKind.INTERRUPTED:
            return "The job was stopped on the image server."
        case FailureKind.EXECUTION_FAILED:
            return f"The image server could not make this image ({detail})."
        case FailureKind.NO_IMAGE:
            return "The image server finished without producing an image."
        case FailureKind.UNREADABLE_IMAGE:
            return f"{_SAVE_FAILED}ComfyUI returned an image that cannot be read ({detail})."
        case FailureKind.DISK_FULL:
            return f"{_SAVE_FAILED}the bot's disk is full, so the images could not be saved."
        case FailureKind.NOT_SAVED:
            return f"{_SAVE_FAILED}the images could not be saved on the bot's server."
        case FailureKind.TIMED_OUT:
            return f"The job took longer than {(failure.number or 0) / 60:g} minutes and was stopped."
        case FailureKind.ATTEMPTS:
            cause = Failure(failure.cause or FailureKind.OTHER, detail)
            return f"The job failed {failure.number or 0:g} times ({failure_text(cause)})."
        # Why one attempt ended: the job went back to the queue, or failed with ATTEMPTS.
        case FailureKind.BACKEND_UNAVAILABLE:
            return f"backend {detail} unavailable"
        case FailureKind.BACKEND_DOWN:
            return f"backend {detail} was down too long"
        case FailureKind.LOST:
            return detail or "the image server lost the job"
        case FailureKind.DOWNLOAD_FAILED:
            return "its images could not be downloaded"
        case FailureKind.BACKEND_GONE:
            return "its backend is no longer configured"
        case FailureKind.NEVER_POSTED:
            return "never posted"
    assert_never(kind)
