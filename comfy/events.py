"""ComfyUI WebSocket frames turned into typed events, a prompt's final outcome, and overall progress."""

from __future__ import annotations

import json
import logging
import re
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comfy.models import (
    ExecutionFailed,
    HistoryEntry,
    ImageRef,
    NodeId,
    PromptInterrupted,
    PromptLost,
    images_of,
    trim,
)

log = logging.getLogger(__name__)

# Binary frame event types (big-endian u32 at the start of the frame).
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Started:
    """ComfyUI began executing the prompt (`execution_start`)."""

    prompt_id: str


@dataclass(frozen=True, slots=True)
class Cached:
    """Nodes whose results came from ComfyUI's cache and will not run (`execution_cached`)."""

    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Executing:
    """A node started (`executing`; the end-of-run `node: null` is not an event)."""

    prompt_id: str
    node: str


@dataclass(frozen=True, slots=True)
class Progress:
    """A node reported progress; for a sampler `value` of `max` steps are done."""

    prompt_id: str
    node: str | None
    value: int
    max: int


@dataclass(frozen=True, slots=True)
class Preview:
    """A preview image (binary frame type 1 or 4)."""

    prompt_id: str
    node: str | None
    image: bytes = field(repr=False)
    mime: str


@dataclass(frozen=True, slots=True)
class ProgressText:
    """A progress text of a node (binary frame type 3)."""

    prompt_id: str
    node: str
    text: str


@dataclass(frozen=True, slots=True)
class Executed:
    """A node finished and showed outputs (`executed`), e.g. SaveImage's files."""

    prompt_id: str
    node: str
    images: tuple[ImageRef, ...]


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The prompt finished (`execution_success`)."""

    prompt_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A node raised (`execution_error`), trimmed: no inputs, no tensors, only the last traceback line."""

    prompt_id: str
    node_id: str
    node_type: str
    exception_type: str
    exception_message: str
    traceback_tail: str = ""

    def to_error(self) -> ExecutionFailed:
        """The matching exception."""
        return ExecutionFailed(
            self.prompt_id, self.node_id, self.node_type, self.exception_type, self.exception_message
        )


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The prompt was interrupted (`execution_interrupted`) or deleted before it ran."""

    prompt_id: str
    node_id: str = ""
    node_type: str = ""
    reason: str = "interrupted"


@dataclass(frozen=True, slots=True)
class Lost:
    """ComfyUI no longer knows the prompt (restarted, deleted, history cleared)."""

    prompt_id: str
    reason: str


Event = (
    Started
    | Cached
    | Executing
    | Progress
    | Preview
    | ProgressText
    | Executed
    | Succeeded
    | Failed
    | Interrupted
    | Lost
)
TERMINAL_EVENTS = (Succeeded, Failed, Interrupted, Lost)
# Events a slow consumer may miss: newer ones of the same kind make them stale.
DROPPABLE_EVENTS = (Progress, Preview, ProgressText)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The broadcast queue size (`status`); `sid` is set on the first frame after connecting."""

    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    """The server's answer to the client's `feature_flags` message."""

    flags: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunEnded:
    """`executing` with `node: null`: the very last frame of a run, after its terminal event."""

    prompt_id: str


Frame = Event | StatusUpdate | ServerFeatures | RunEnded

# --------------------------------------------------------------------------- wire shapes


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _PromptData(_Data):
    prompt_id: str = ""


class _CachedData(_PromptData):
    nodes: list[NodeId] = Field(default_factory=list)


class _ExecutingData(_PromptData):
    node: NodeId | None = None


class _ProgressData(_PromptData):
    value: float
    max: float
    node: NodeId | None = None


class _ExecutedData(_PromptData):
    node: NodeId
    output: dict[str, Any] | None = None


class _ErrorData(_PromptData):
    node_id: NodeId | None = None
    node_type: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: list[str] | None = None


class _ExecInfo(_Data):
    queue_remaining: int = 0


class _Status(_Data):
    exec_info: _ExecInfo = Field(default_factory=_ExecInfo)


class _StatusData(_Data):
    status: _Status = Field(default_factory=_Status)
    sid: str | None = None


def _error_text(message: str) -> str:
    # Some exceptions embed tensor reprs or long dumps after the first paragraph: keep the sentence.
    head = re.split(r"tensor\(|\n\s*\n", message, maxsplit=1)[0]
    return trim(head.strip(" :\n") or message, 300)


def failed_from_wire(prompt_id: str, data: Mapping[str, Any]) -> Failed:
    """Build a trimmed `Failed` from `execution_error` data (WebSocket or history)."""
    parsed = _ErrorData.model_validate(dict(data))
    tail = ""
    if parsed.traceback:
        tail = trim(parsed.traceback[-1], 200)
    return Failed(
        prompt_id=prompt_id or parsed.prompt_id,
        node_id=parsed.node_id or "",
        node_type=trim(parsed.node_type or "", 100),
        exception_type=trim(parsed.exception_type or "", 100),
        exception_message=_error_text(parsed.exception_message or ""),
        traceback_tail=tail,
    )


def _interrupted_from_wire(data: Mapping[str, Any]) -> Interrupted:
    parsed = _ErrorData.model_validate(dict(data))
    return Interrupted(
        prompt_id=parsed.prompt_id, node_id=parsed.node_id or "", node_type=parsed.node_type or ""
    )


def _text_frame(kind: str, data: dict[str, Any]) -> Frame | None:
    if kind == "status":
        status = _StatusData.model_validate(data)
        return StatusUpdate(status.status.exec_info.queue_remaining, status.sid)
    if kind == "execution_start":
        return Started(_PromptData.model_validate(data).prompt_id)
    if kind == "execution_cached":
        cached = _CachedData.model_validate(data)
        return Cached(cached.prompt_id, tuple(cached.nodes))
    if kind == "executing":
        executing = _ExecutingData.model_validate(data)
        if executing.node is None:
            return RunEnded(executing.prompt_id) if executing.prompt_id else None
        return Executing(executing.prompt_id, executing.node)
    if kind == "progress":
        progress = _ProgressData.model_validate(data)
        return Progress(progress.prompt_id, progress.node, round(progress.value), round(progress.max))
    if kind == "executed":
        executed = _ExecutedData.model_validate(data)
        return Executed(executed.prompt_id, executed.node, images_of(executed.output))
    if kind == "execution_success":
        return Succeeded(_PromptData.model_validate(data).prompt_id)
    if kind == "execution_error":
        return failed_from_wire("", data)
    if kind == "execution_interrupted":
        return _interrupted_from_wire(data)
    if kind == "feature_flags":
        return ServerFeatures(dict(data))
    return None  # progress_state, crystools.monitor, custom nodes' messages, ...


def parse_text_frame(raw: str | bytes) -> Frame | None:
    """Parse one text frame; None for unknown types and for anything malformed (logged, never raised).

    Events whose frame carries no `prompt_id` (the `executing` sent after a reconnect, progress
    from old servers) come back with `prompt_id == ""`: the client attributes them.
    """
    try:
        message = json.loads(raw)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return None
        data = message.get("data")
        return _text_frame(message["type"], data if isinstance(data, dict) else {})
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring malformed ComfyUI frame %s: %s", trim(raw, 120), trim(exc, 200))
        return None


def parse_binary_frame(raw: bytes) -> Preview | ProgressText | None:
    """Parse one binary frame (preview types 1 and 4, text type 3); None when unknown or malformed.

    Type 1 and 3 frames name no prompt (`prompt_id == ""`) and type 1 names no node either.
    """
    if len(raw) < 8:
        return None
    (kind,) = struct.unpack_from(">I", raw, 0)
    try:
        if kind == BINARY_PREVIEW_IMAGE:
            (image_type,) = struct.unpack_from(">I", raw, 4)
            return Preview("", None, bytes(raw[8:]), _IMAGE_TYPES.get(image_type, "image/jpeg"))
        if kind == BINARY_PREVIEW_WITH_METADATA:
            (meta_len,) = struct.unpack_from(">I", raw, 4)
            if 8 + meta_len > len(raw):
                return None
            meta = json.loads(raw[8 : 8 + meta_len])
            if not isinstance(meta, dict):
                return None
            node = meta.get("display_node_id") or meta.get("node_id")
            image_type = meta.get("image_type")
            mime = image_type if isinstance(image_type, str) else "image/jpeg"
            return Preview(
                str(meta.get("prompt_id") or ""),
                str(node) if node is not None else None,
                bytes(raw[8 + meta_len :]),
                mime,
            )
        if kind == BINARY_TEXT:
            (node_len,) = struct.unpack_from(">I", raw, 4)
            if 8 + node_len > len(raw):
                return None
            node = raw[8 : 8 + node_len].decode("utf-8", "replace")
            return ProgressText("", node, raw[8 + node_len :].decode("utf-8", "replace"))
    except (ValueError, struct.error) as exc:
        log.warning("ignoring malformed binary frame of type %d: %s", kind, trim(exc, 200))
    return None


# --------------------------------------------------------------------------- outcome


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


# --------------------------------------------------------------------------- progress


SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})


@dataclass(frozen=True)
class ProgressSnapshot:
    """Overall progress of a prompt across all its samplers."""

    fraction: float
    step: int
    total_steps: int
    node: str | None
    eta_s: float | None


def _literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sampler_steps(graph: Mapping[str, Any]) -> dict[str, int | None]:
    """Sampler node ids of an API-format graph and their step count when it is written in the graph."""
    found: dict[str, int | None] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or node.get("class_type") not in SAMPLER_CLASSES:
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            inputs = {}
        steps = _literal_int(inputs.get("steps"))
        if node["class_type"] == "KSamplerAdvanced" and steps is not None:
            start = _literal_int(inputs.get("start_at_step")) or 0
            end = _literal_int(inputs.get("end_at_step"))
            steps = max(0, min(steps, end if end is not None else steps) - start)
        found[str(node_id)] = steps
    return found


class ProgressTracker:
    """Turn Progress events of every sampler of a workflow into one fraction, step n/N and an ETA.

    Hires and upscale workflows run two samplers; each reports its own `value/max`. Samplers whose
    step count is not known yet count as the average of the known ones. The ETA uses the step
    rate of the sampler running now (or of the whole run so far), measured from its first report
    so the slow warm-up step does not count.
    """

    def __init__(
        self,
        sampler_node_ids: Iterable[str] = (),
        *,
        steps: Mapping[str, int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._samplers: list[str] = [str(node) for node in sampler_node_ids]
        self._adopt_any = not self._samplers
        self._max: dict[str, int] = {
            str(node): count for node, count in (steps or {}).items() if count is not None and count > 0
        }
        self._done: dict[str, int] = {}
        self._first: dict[str, tuple[float, int]] = {}
        self._run_first: tuple[float, int] | None = None
        self._last_time: float | None = None
        self._node: str | None = None
        self._finished = False
        self._clock = clock

    @classmethod
    def from_graph(
        cls, graph: Mapping[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> ProgressTracker:
        """Track the samplers found in an API-format graph (KSampler, KSamplerAdvanced, SamplerCustom)."""
        steps = sampler_steps(graph)
        return cls(list(steps), steps=steps, clock=clock)

    def update(self, event: Event) -> ProgressSnapshot | None:
        """Feed any event; return a new snapshot when overall progress changed, else None."""
        if isinstance(event, Cached):
            skipped = [node for node in event.nodes if node in self._samplers]
            for node in skipped:
                self._samplers.remove(node)
            return self.snapshot() if skipped else None
        if isinstance(event, Succeeded):
            self._finished = True
            return self.snapshot()
        if not isinstance(event, Progress) or event.node is None or event.max <= 0:
            return None
        node = event.node
        if node not in self._samplers:
            if not self._adopt_any:
                return None
            self._samplers.append(node)
        now = self._clock()
        self._max[node] = event.max
        self._done[node] = max(0, min(event.value, event.max))
        self._node = node
        self._first.setdefault(node, (now, self._done[node]))
        if self._run_first is None:
            self._run_first = (now, self._total_done())
        self._last_time = now
        return self.snapshot()

    def _total_done(self) -> int:
        return sum(self._done.get(node, 0) for node in self._samplers)

    def _planned(self) -> int:
        known = [self._max[node] for node in self._samplers if node in self._max]
        guess = round(sum(known) / len(known)) if known else 0
        return sum(self._max.get(node, guess) for node in self._samplers)

    def _seconds_per_step(self) -> float | None:
        if self._last_time is None:
            return None
        candidates = []
        if self._node is not None and self._node in self._first:
            candidates.append((self._first[self._node], self._done.get(self._node, 0)))
        if self._run_first is not None:
            candidates.append((self._run_first, self._total_done()))
        for (start_time, start_done), done_now in candidates:
            if done_now > start_done and self._last_time > start_time:
                return (self._last_time - start_time) / (done_now - start_done)
        return None

    def snapshot(self) -> ProgressSnapshot:
        """Overall progress now."""
        total = self._planned()
        done = self._total_done()
        if self._finished:
            return ProgressSnapshot(1.0, max(done, total), max(done, total), self._node, 0.0)
        fraction = min(1.0, done / total) if total else 0.0
        rate = self._seconds_per_step()
        eta = None
        if rate is not None and total:
            eta = max(0.0, (total - done) * rate - (self._clock() - (self._last_time or 0.0)))
        return ProgressSnapshot(fraction, done, total, self._node, eta)
