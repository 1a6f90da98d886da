"""How a prompt ended: its images, the trimmed error or why it was interrupted or lost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from comfy.events import Failed, Interrupted, Lost, Succeeded, failed_from_wire
from comfy.models import ExecutionFailed, HistoryEntry, ImageRef, PromptInterrupted, PromptLost


class OutcomeStatus(StrEnum):
    """How a prompt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    LOST = "lost"


@dataclass(frozen=True)
class Outcome:
    """The end of a prompt: its images on success, the trimmed error on failure, a reason otherwise."""

    prompt_id: str
    status: OutcomeStatus
    outputs: Mapping[str, tuple[ImageRef, ...]] = field(default_factory=dict)
    error: Failed | None = None
    reason: str = ""
    from_history: bool = False

    @property
    def ok(self) -> bool:
        """True when the prompt succeeded."""
        return self.status is OutcomeStatus.SUCCEEDED

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """Every output image, node by node, in the order ComfyUI reported them."""
        return tuple(ref for refs in self.outputs.values() for ref in refs)

    def raise_for_status(self) -> Outcome:
        """Return self when it succeeded, else raise ExecutionFailed, PromptInterrupted or PromptLost."""
        if self.status is OutcomeStatus.FAILED:
            if self.error is not None:
                raise self.error.to_error()
            raise ExecutionFailed(self.prompt_id, "", "", "", self.reason or "unknown error")
        if self.status is OutcomeStatus.INTERRUPTED:
            raise PromptInterrupted(f"prompt {self.prompt_id} was {self.reason or 'interrupted'}")
        if self.status is OutcomeStatus.LOST:
            raise PromptLost(self.reason or f"prompt {self.prompt_id} was lost")
        return self

    def to_event(self) -> Succeeded | Failed | Interrupted | Lost:
        """The terminal event that announces this outcome."""
        if self.status is OutcomeStatus.SUCCEEDED:
            return Succeeded(self.prompt_id)
        if self.status is OutcomeStatus.FAILED:
            return self.error or Failed(self.prompt_id, "", "", "", self.reason)
        if self.status is OutcomeStatus.INTERRUPTED:
            return Interrupted(self.prompt_id, reason=self.reason or "interrupted")
        return Lost(self.prompt_id, self.reason)


def outcome_from_history(entry: HistoryEntry) -> Outcome:
    """Decide how a prompt ended from its `/history` entry."""
    status = entry.status
    if status is None or status.status_str == "success":
        return Outcome(entry.prompt_id, OutcomeStatus.SUCCEEDED, entry.images(), from_history=True)
    error = status.message("execution_error")
    if error is not None:
        failed = failed_from_wire(entry.prompt_id, error)
        return Outcome(entry.prompt_id, OutcomeStatus.FAILED, error=failed, from_history=True)
    interrupted = status.message("execution_interrupted")
    if interrupted is not None:
        return Outcome(entry.prompt_id, OutcomeStatus.INTERRUPTED, reason="interrupted", from_history=True)
    reason = f"ComfyUI reported status {status.status_str!r} without an error"
    return Outcome(entry.prompt_id, OutcomeStatus.FAILED, reason=reason, from_history=True)
