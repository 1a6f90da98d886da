"""The slash commands as members find them in Discord: names, descriptions, options and their choices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bot.jobs import Job
from bot.queue_service import excerpt
from cogs._words.jobs import STATUS_WORDS

CHOICE_LABEL_CHARS: Final = 100  # Discord's limit for an autocomplete choice name


@dataclass(frozen=True, slots=True)
class CommandWords:
    """A slash command's name, what it does, and what each option (by parameter name) asks for."""

    name: str
    description: str
    options: Mapping[str, str] = field(default_factory=dict)


IMAGINE: Final = CommandWords(
    "imagine",
    "Make four images from a text prompt",
    {
        "prompt": "What to draw, then parameters such as --ar 16:9 --seed 7 --no text",
        "image": "An image to start from; --iw (0 to 3) sets how much it counts",
        "model": "The model to draw with",
    },
)
BLEND: Final = CommandWords(
    "blend",
    "Mix 2 to 5 images into four new ones",
    {
        "image1": "The first image to mix",
        "image2": "The second image to mix",
        "image3": "A third image (optional)",
        "image4": "A fourth image (optional)",
        "image5": "A fifth image (optional)",
        "dimensions": "The shape of the new images (square unless you pick another)",
    },
)
SETTINGS: Final = CommandWords(
    "settings",
    "Your defaults for /imagine: model, aspect, style, ping, remix",
    {
        "ping": "Mention me in the message with my finished images (on unless you turn it off)",
        "remix": "Remix mode: V, 🔄, Vary, Zoom Out and pan buttons first let you edit the prompt",
    },
)
QUEUE: Final = CommandWords("queue", "Show waiting and running jobs (admins: everyone's)")
CANCEL: Final = CommandWords(
    "cancel",
    "Cancel a waiting or running job",
    {"job": "The job to cancel: pick it from the list, or type its number like #42"},
)
STATUS: Final = CommandWords("status", "Image servers, this server's queue and today's jobs")


def blend_shape_name(width: int, height: int) -> str:
    """`Portrait 2:3`, `Square 1:1`, `Landscape 3:2`: a choice of /blend's dimensions."""
    shape = "Portrait" if width < height else "Landscape" if width > height else "Square"
    return f"{shape} {width}:{height}"


def choice_label(job: Job) -> str:
    """`#42 · running · a lighthouse at du…`, at most 100 characters (a choice /cancel offers as you type)."""
    head = f"#{job.id} · {STATUS_WORDS[job.status]}"
    text = excerpt(job.prompt, CHOICE_LABEL_CHARS - len(head) - 3)
    return f"{head} · {text}" if text else head
