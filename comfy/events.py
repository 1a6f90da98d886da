"""ComfyUI WebSocket frames turned into typed events (how a prompt ended: comfy.outcome; progress: comfy.progress)."""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comfy.models import ExecutionFailed, ImageRef, NodeId, images_of, trim

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
