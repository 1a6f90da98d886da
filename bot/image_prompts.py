"""Images members attach to /imagine and /blend: checked, kept once under the output folder, named in their
jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
from collections.abc import Sequence

from bot.errors import MemberError, Reason
from bot.jobs import ImagePrompt, JobKind, NewJob
from bot.outputs import OutputStore
from bot.scheduler import IMAGE_PROMPT_DIR
from comfy.images import ImageError, image_size

MAX_IMAGE_PROMPT_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PROMPT_SIDE = 8192
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def check_image_prompt_size(size: int, name: str | None = None) -> None:
    """Refuse an attachment of `size` bytes over the limit (MemberError IMAGE_TOO_LARGE, naming it when
    `name` is given: a command with several)."""
    if size > MAX_IMAGE_PROMPT_BYTES:
        raise MemberError(Reason.IMAGE_TOO_LARGE, count=size, allowed=MAX_IMAGE_PROMPT_BYTES, value=name)


async def save_image_prompt(outputs: OutputStore, data: bytes) -> ImagePrompt:
    """Check an attached image and keep it in the image storage for the scheduler to upload.

    Raises MemberError when it is too large, not an image, or too many pixels a side.
    """
    check_image_prompt_size(len(data))
    try:
        width, height = image_size(data)
        extension, data = await asyncio.to_thread(_normalised_image, data)
    except ImageError:
        raise MemberError(Reason.IMAGE_UNREADABLE) from None
    if max(width, height) > MAX_IMAGE_PROMPT_SIDE:
        raise MemberError(Reason.IMAGE_TOO_BIG, width=width, height=height, allowed=MAX_IMAGE_PROMPT_SIDE)
    name = f"{IMAGE_PROMPT_DIR}/{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
    await outputs.put_once(name, data)
    return ImagePrompt(name, width, height)


def with_image(jobs: Sequence[NewJob], image: ImagePrompt) -> list[NewJob]:
    """The jobs turned into image-prompt (img2img) jobs starting from `image`."""
    return [dataclasses.replace(job, kind=JobKind.IMG2IMG, image_prompt=image) for job in jobs]


def _normalised_image(data: bytes) -> tuple[str, bytes]:
    """The file extension and bytes to keep: PNG, JPEG and WebP as sent, anything else as PNG."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            if fmt in _IMAGE_FORMATS and not getattr(image, "is_animated", False):
                return _IMAGE_FORMATS[fmt], data
            image.seek(0)
            out = io.BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, format="PNG")
            return "png", out.getvalue()
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(str(exc)) from None
