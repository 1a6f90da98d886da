"""Failures and waits are facts in bot/ (encoded in the `error` column); the cogs put them into words."""

from __future__ import annotations

import pytest

from bot.reasons import Failure, FailureKind, WaitReason
from cogs._words.failures import failure_text
from cogs._words.status import waiting_text

# Each fact, its form in the `error` column, and the sentence a member reads (the scheduler's own before).
CASES = [
    (
        Failure(FailureKind.TIMED_OUT, number=900),
        "timed_out/900",
        "The job took longer than 15 minutes and was stopped.",
    ),
    (
        Failure(FailureKind.TIMED_OUT, number=0.5),
        "timed_out/0.5",
        "The job took longer than 0.00833333 minutes and was stopped.",
    ),
    (
        Failure(FailureKind.ATTEMPTS, "gpu0", 3, FailureKind.BACKEND_UNAVAILABLE),
        "attempts/3/backend_unavailable: gpu0",
        "The job failed 3 times (backend gpu0 unavailable).",
    ),
    (
        Failure(FailureKind.ATTEMPTS, "gpu1", 3, FailureKind.BACKEND_DOWN),
        "attempts/3/backend_down: gpu1",
        "The job failed 3 times (backend gpu1 was down too long).",
    ),
    (
        Failure(FailureKind.ATTEMPTS, "", 2, FailureKind.LOST),
        "attempts/2/lost",
        "The job failed 2 times (the image server lost the job).",
    ),
    (
        Failure(FailureKind.ATTEMPTS, "", 3, FailureKind.DOWNLOAD_FAILED),
        "attempts/3/download_failed",
        "The job failed 3 times (its images could not be downloaded).",
    ),
    (
        Failure(FailureKind.REFUSED, "Prompt outputs failed validation: ckpt_name: x"),
        "refused: Prompt outputs failed validation: ckpt_name: x",
        "The image server refused this job: Prompt outputs failed validation: ckpt_name: x",
    ),
    (
        Failure(FailureKind.EXECUTION_FAILED, "RuntimeError: Sizes of tensors must match"),
        "execution_failed: RuntimeError: Sizes of tensors must match",
        "The image server could not make this image (RuntimeError: Sizes of tensors must match).",
    ),
    (
        Failure(FailureKind.PARENT_DELETED),
        "parent_deleted",
        "the image this job starts from was deleted from the bot's disk",
    ),
    (
        Failure(FailureKind.IMAGE_PROMPT_DELETED),
        "image_prompt_deleted",
        "the attached image was deleted from the bot's disk",
    ),
    (
        Failure(FailureKind.DISK_FULL),
        "disk_full",
        "The image was made but the bot's disk is full, so the images could not be saved.",
    ),
    (
        Failure(FailureKind.NOT_SAVED),
        "not_saved",
        "The image was made but the images could not be saved on the bot's server.",
    ),
    (Failure(FailureKind.INTERRUPTED), "interrupted", "The job was stopped on the image server."),
    (
        Failure(FailureKind.INVALID, "--tile needs a tiling model"),
        "invalid: --tile needs a tiling model",
        "--tile needs a tiling model",
    ),
]


@pytest.mark.parametrize(("failure", "encoded", "text"), CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_a_failure_is_stored_as_its_kind_and_read_back_as_todays_sentence(
    failure: Failure, encoded: str, text: str
) -> None:
    assert failure.encode() == encoded
    assert Failure.decode(encoded) == failure
    assert failure_text(Failure.decode(encoded)) == text


@pytest.mark.parametrize(
    "legacy",
    [
        "The job failed 3 times (backend gpu0 unavailable).",
        "The image server refused this job: Prompt outputs failed validation",
        "backend gpu0 was down too long",
        "timed_out/soon",
        "",
    ],
)
def test_free_text_written_before_failures_were_facts_reads_back_as_it_was(legacy: str) -> None:
    failure = Failure.decode(legacy)
    assert failure == Failure(FailureKind.OTHER, legacy)
    assert failure_text(failure) == legacy


def test_every_kind_has_words() -> None:
    for kind in FailureKind:
        if kind is not FailureKind.OTHER:
            assert failure_text(Failure(kind, "x", 2, FailureKind.LOST)).strip(), kind


def test_a_job_waiting_for_a_backend_says_it_will_start_when_one_is_back() -> None:
    assert waiting_text(WaitReason.NO_BACKEND) == (
        "No image server is reachable right now; your job will start when one is back."
    )
