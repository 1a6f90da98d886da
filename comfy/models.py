"""ComfyUI's HTTP answers as typed models, and the errors the client raises."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

log = logging.getLogger(__name__)

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_prompt_id() -> str:
    """Return a fresh prompt id in the canonical form every ComfyUI version accepts (lowercase uuid4)."""
    return str(uuid.uuid4())


def is_prompt_id(value: object) -> bool:
    """Tell whether `value` is a canonical lowercase UUID string, the form newer ComfyUI insists on."""
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def trim(text: object, limit: int = 300) -> str:
    """Collapse whitespace and cut `text` to `limit` characters, for messages a person will read."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _node_id(value: object) -> object:
    # Node ids are strings on the wire, but a hand-written graph may use numbers.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


NodeId = Annotated[str, BeforeValidator(_node_id)]


class _Wire(BaseModel):
    """A shape read from ComfyUI: unknown fields are ignored, so newer servers keep working."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --------------------------------------------------------------------------- images


class ImageRef(_Wire):
    """One file ComfyUI produced or holds: what `/view` needs to return it."""

    filename: str
    subfolder: str = ""
    type: str = "output"


def images_of(output: object) -> tuple[ImageRef, ...]:
    """The `images` entries of one node's output (`executed.output` or a history output), malformed ones skipped."""
    if not isinstance(output, dict):
        return ()
    found: list[ImageRef] = []
    for item in output.get("images") or ():
        if isinstance(item, dict) and isinstance(item.get("filename"), str) and item["filename"]:
            found.append(
                ImageRef(
                    filename=item["filename"],
                    subfolder=str(item.get("subfolder") or ""),
                    type=str(item.get("type") or "output"),
                )
            )
    return tuple(found)


class UploadedImage(_Wire):
    """The answer of `POST /upload/image`."""

    name: str
    subfolder: str = ""
    type: str = "input"

    @property
    def load_image_name(self) -> str:
        """The value for a LoadImage node's `image` input ("subfolder/name" when in a subfolder)."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


# --------------------------------------------------------------------------- prompt, queue, history


class QueuedPrompt(_Wire):
    """The 200 answer of `POST /prompt`."""

    prompt_id: str
    number: float = 0
    node_errors: dict[str, Any] = Field(default_factory=dict)


class QueueItem(_Wire):
    """One entry of `/queue` (`[number, prompt_id, graph, extra_data, outputs]` on the wire)."""

    number: float
    prompt_id: str
    client_id: str | None = None


def _queue_items(raw: object) -> tuple[QueueItem, ...]:
    items: list[QueueItem] = []
    for entry in raw if isinstance(raw, list) else ():
        if not isinstance(entry, list | tuple) or len(entry) < 2 or not isinstance(entry[1], str):
            continue
        extra = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
        number = entry[0] if isinstance(entry[0], int | float) else 0
        client_id = extra.get("client_id") if isinstance(extra.get("client_id"), str) else None
        items.append(QueueItem(number=number, prompt_id=entry[1], client_id=client_id))
    return tuple(items)


class QueueState(_Wire):
    """What ComfyUI is running and what waits (`GET /queue`)."""

    running: tuple[QueueItem, ...] = ()
    pending: tuple[QueueItem, ...] = ()

    @classmethod
    def from_wire(cls, body: object) -> QueueState:
        """Build from the `/queue` body, skipping entries that do not look like queue items."""
        data = body if isinstance(body, dict) else {}
        pending = sorted(_queue_items(data.get("queue_pending")), key=lambda item: item.number)
        return cls(running=_queue_items(data.get("queue_running")), pending=tuple(pending))

    @property
    def running_ids(self) -> tuple[str, ...]:
        """Prompt ids being executed (one on a stock ComfyUI)."""
        return tuple(item.prompt_id for item in self.running)

    @property
    def pending_ids(self) -> tuple[str, ...]:
        """Prompt ids waiting, next first."""
        return tuple(item.prompt_id for item in self.pending)

    def position(self, prompt_id: str) -> int | None:
        """0 when running, n when n prompts run or wait before it, None when not queued."""
        if prompt_id in self.running_ids:
            return 0
        if prompt_id in self.pending_ids:
            return len(self.running) + self.pending_ids.index(prompt_id)
        return None


class HistoryStatus(_Wire):
    """`status` of a history entry."""

    status_str: str | None = None
    completed: bool = False
    messages: list[Any] = Field(default_factory=list)

    def message(self, name: str) -> dict[str, Any] | None:
        """The data of the first `[name, data]` message, if any."""
        for item in self.messages:
            if isinstance(item, list | tuple) and len(item) == 2 and item[0] == name:
                return item[1] if isinstance(item[1], dict) else {}
        return None


class HistoryEntry(_Wire):
    """One finished prompt from `/history` (success, error or interrupted)."""

    prompt_id: str
    outputs: dict[str, Any] = Field(default_factory=dict)
    status: HistoryStatus | None = None

    @classmethod
    def from_wire(cls, prompt_id: str, body: object) -> HistoryEntry:
        """Build from the value stored under `prompt_id` in a `/history` answer."""
        data = body if isinstance(body, dict) else {}
        status = data.get("status")
        outputs = data.get("outputs")
        return cls(
            prompt_id=prompt_id,
            outputs=outputs if isinstance(outputs, dict) else {},
            status=HistoryStatus.model_validate(status) if isinstance(status, dict) else None,
        )

    def images(self) -> dict[str, tuple[ImageRef, ...]]:
        """Images per output node, in the order ComfyUI stored them."""
        found = {str(node): images_of(output) for node, output in self.outputs.items()}
        return {node: refs for node, refs in found.items() if refs}


# --------------------------------------------------------------------------- server info


class SystemInfo(_Wire):
    """`system` of `/system_stats`."""

    os: str = ""
    comfyui_version: str = ""
    python_version: str = ""
    pytorch_version: str = ""
    ram_total: int = 0
    ram_free: int = 0


class Device(_Wire):
    """One entry of `devices` in `/system_stats`."""

    name: str = ""
    type: str = ""
    vram_total: int = 0
    vram_free: int = 0


class SystemStats(_Wire):
    """`GET /system_stats`: versions and memory, used as the health check."""

    system: SystemInfo = Field(default_factory=SystemInfo)
    devices: list[Device] = Field(default_factory=list)


# --------------------------------------------------------------------------- errors


class ComfyError(Exception):
    """Base of every error the ComfyUI client raises."""


class BackendUnavailable(ComfyError):
    """ComfyUI cannot be reached or is failing: refused, timed out, 5xx, socket gone."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ComfyUI at {url} is unavailable: {reason}")


class BadResponse(ComfyError):
    """ComfyUI answered, but not with what the client expected (4xx, malformed body, too large)."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{message} ({url})")


class _ErrorBody(_Wire):
    type: str = ""
    message: str = ""
    details: str = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)


class _NodeErrors(_Wire):
    errors: list[_ErrorBody] = Field(default_factory=list)
    class_type: str = ""


class _RejectionBody(_Wire):
    error: _ErrorBody | str = Field(default_factory=_ErrorBody)
    node_errors: dict[str, _NodeErrors] = Field(default_factory=dict)


def _describe_options(options: list[Any], limit: int = 8) -> str:
    if not options:
        return "none are installed"
    shown = ", ".join(str(option) for option in options[:limit])
    more = len(options) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _node_error_line(node_id: str, class_type: str, error: _ErrorBody) -> str:
    info = error.extra_info
    name = info.get("input_name") if isinstance(info.get("input_name"), str) else ""
    where = f"node {node_id} ({class_type})" if class_type else f"node {node_id}"
    text = error.message or error.type or "invalid"
    config = info.get("input_config")
    if error.type == "required_input_missing":
        name = name or error.details
    elif error.type == "value_not_in_list" and "received_value" in info:
        options = config[0] if isinstance(config, list) and config and isinstance(config[0], list) else []
        text = f"{trim(repr(info['received_value']), 80)} is not available; allowed: {_describe_options(options)}"
    elif error.type == "return_type_mismatch":
        expected = config[0] if isinstance(config, list) and config else "?"
        text += f" (got {info.get('received_type', '?')}, expected {expected})"
    elif "received_value" in info and str(info["received_value"]) not in text:
        text += f" (got {trim(repr(info['received_value']), 80)})"
    elif error.details and error.details != name and error.details not in text:
        text += f": {error.details}"
    return trim(f"{where} {name}: {text}" if name else f"{where}: {text}", 400)


class PromptRejected(ComfyError):
    """ComfyUI refused the workflow (HTTP 400): one readable line per problem in `lines`."""

    def __init__(self, lines: list[str], error_type: str = "") -> None:
        self.lines = tuple(lines) or ("ComfyUI rejected the workflow",)
        self.error_type = error_type
        super().__init__("\n".join(self.lines))

    @classmethod
    def from_body(cls, body: object) -> PromptRejected:
        """Turn a 400 body (`{"error": ..., "node_errors": ...}`) into readable lines."""
        if not isinstance(body, dict):
            return cls([f"ComfyUI rejected the workflow: {trim(body, 200)}"])
        try:
            parsed = _RejectionBody.model_validate(body)
        except ValueError:
            log.warning("unreadable rejection body from ComfyUI: %s", trim(body, 200))
            return cls([f"ComfyUI rejected the workflow: {trim(body, 200)}"])
        error = parsed.error if isinstance(parsed.error, _ErrorBody) else _ErrorBody(message=parsed.error)
        lines = [
            _node_error_line(node_id, node.class_type, node_error)
            for node_id, node in parsed.node_errors.items()
            for node_error in node.errors
        ]
        if not lines:
            text = error.message or error.type or "ComfyUI rejected the workflow"
            if error.details and error.details not in text:
                text += f" ({error.details})"
            lines = [trim(text, 400)]
        return cls(lines, error.type)


class ExecutionFailed(ComfyError):
    """A node raised while ComfyUI ran the prompt (`execution_error`)."""

    def __init__(
        self, prompt_id: str, node_id: str, node_type: str, exception_type: str, exception_message: str
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        what = f"{node_type} (node {node_id})" if node_type else f"node {node_id or '?'}"
        kind = f"{exception_type}: " if exception_type else ""
        super().__init__(f"{what} failed: {kind}{exception_message or 'unknown error'}")


class PromptInterrupted(ComfyError):
    """The prompt was interrupted or deleted from the queue before it finished."""


class PromptLost(ComfyError):
    """ComfyUI no longer knows the prompt: not queued, not running, not in history."""


class WatchClosed(ComfyError):
    """The watch was closed (or the client shut down) before the prompt finished."""
