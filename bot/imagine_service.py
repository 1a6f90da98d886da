"""What /imagine and its buttons do, without Discord: check, parse, apply settings, queue, follow up.

Every refusal a member caused (bad parameters, a banned word, a limit, a follow-up that cannot be made,
a job from another server) is raised as `UserError`, whose text is written for the member.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.events import Completed
from bot.jobs import (
    CancelRefusal,
    EnqueueLimits,
    Job,
    JobKind,
    JobNotFound,
    JobStatus,
    LimitExceeded,
    NewJob,
    UserSettings,
    cancel_refusal,
)
from bot.scheduler import IMAGE_PROMPT_DIR, IMAGE_PROMPT_KEY
from comfy.actions import REROLL, action_named
from comfy.images import ImageError, image_size
from comfy.params import (
    GenerationRequest,
    ParamError,
    ParseContext,
    format_request,
    parse_prompt,
    request_from_json,
    request_to_json,
    with_new_seed,
)
from comfy.render import RenderError, SourceImage, template_values

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

MAX_IMAGE_PROMPT_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PROMPT_SIDE = 8192
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_SETTINGS_ASPECT = re.compile(r"\d{1,4}:\d{1,4}")


# Results the bot never posted (it stopped first) are posted on start when they are this recent.
UNSHOWN_WINDOW_S = 7 * 86400.0


class UserError(Exception):
    """Something the member did that the bot refuses; `str(exc)` says what and what is allowed."""


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """An image a member attached, saved under the output folder (`file` is relative to it)."""

    file: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job just queued, with its place in its server's queue (None once it left the queue)."""

    job: Job
    position: int | None


class ImagineService:
    """The application side of /imagine and of the buttons under its results."""

    def __init__(self, services: Services, *, rng: random.Random | None = None) -> None:
        self.services = services
        self.config = services.config
        self._rng = rng or random.Random()

    # ------------------------------------------------------------------ /imagine

    async def prepare(
        self,
        prompt: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        has_image: bool = False,
        model: str | None = None,
        parent_channel_id: int | None = None,
    ) -> list[NewJob]:
        """Check and parse a prompt into the jobs to queue, with the member's /settings applied.

        `parent_channel_id` is the channel a thread belongs to (a thread of an allowed channel is allowed).
        Raises `UserError` for a channel outside the allow-list, a banned word, bad parameters, an unknown
        model or too many jobs for one command.
        """
        self._check_channel(channel_id, parent_channel_id)
        chosen_model = self._check_model_option(model)
        settings = await self.services.store.get_user_settings(user_id)
        requests = self._parse_with_settings(prompt, settings, chosen_model, has_image)
        for request in requests:
            self._check_banned_words(request.text)
        cap = self.config.limits.max_jobs_per_command
        if len(requests) > cap:
            raise UserError(
                f"This prompt makes {len(requests)} jobs (permutations × `--repeat`); "
                f"one command may make at most {cap}. Use fewer options or a smaller `--repeat`."
            )
        kind = JobKind.IMG2IMG if has_image else JobKind.IMAGINE
        return [
            NewJob(
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                kind=kind,
                prompt=request.text,
                request_json=request_to_json(request),
                model=request.model,
            )
            for request in requests
        ]

    async def save_image_prompt(self, data: bytes) -> ImagePrompt:
        """Check an attached image and keep it under the output folder for the scheduler to upload."""
        if len(data) > MAX_IMAGE_PROMPT_BYTES:
            raise UserError(
                f"The attached image is {len(data) / 1_048_576:.1f} MB; at most "
                f"{MAX_IMAGE_PROMPT_BYTES // 1_048_576} MB are allowed."
            )
        try:
            width, height = image_size(data)
            extension, data = await asyncio.to_thread(_normalised_image, data)
        except ImageError:
            raise UserError(
                "The attachment is not an image I can read; attach a PNG, JPEG or WebP."
            ) from None
        if max(width, height) > MAX_IMAGE_PROMPT_SIDE:
            raise UserError(
                f"The attached image is {width}×{height} pixels; at most {MAX_IMAGE_PROMPT_SIDE} a side."
            )
        name = f"{IMAGE_PROMPT_DIR}/{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
        await asyncio.to_thread(_write_once, self.services.outputs.root / name, data)
        return ImagePrompt(name, width, height)

    @staticmethod
    def with_image(jobs: Sequence[NewJob], image: ImagePrompt) -> list[NewJob]:
        """The jobs turned into image-prompt (img2img) jobs starting from `image`."""
        result = []
        for job in jobs:
            data = json.loads(job.request_json)
            data[IMAGE_PROMPT_KEY] = {"file": image.file, "width": image.width, "height": image.height}
            result.append(
                dataclasses.replace(
                    job, kind=JobKind.IMG2IMG, request_json=json.dumps(data, ensure_ascii=False)
                )
            )
        return result

    async def submit(self, jobs: Sequence[NewJob]) -> list[QueuedJob]:
        """Queue the jobs of one command (limits checked atomically); raises `UserError` over a limit."""
        try:
            created = await self.services.scheduler.submit(jobs, limits=self.enqueue_limits())
        except LimitExceeded as exc:
            raise UserError(str(exc)) from None
        except JobNotFound:
            raise UserError("The image this starts from no longer exists.") from None
        store = self.services.store
        return [QueuedJob(job, await store.position_of(job.id)) for job in created]

    def enqueue_limits(self) -> EnqueueLimits:
        """The caps of `[limits]` as the store checks them."""
        limits = self.config.limits
        return EnqueueLimits(
            per_user_active=limits.per_user_active,
            per_guild_queued=limits.per_guild_queued,
            per_user_per_minute=limits.per_user_per_minute,
            max_jobs_per_command=limits.max_jobs_per_command,
        )

    # ------------------------------------------------------------------ buttons

    async def follow_up(
        self,
        parent_job_id: int,
        index: int,
        action: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
    ) -> list[QueuedJob]:
        """Queue a follow-up of image `index` (0-based) of a finished job, owned by the member who asked.

        `action` names a row of comfy.actions: one that starts from that image, or a reroll (the parent's
        own request again with a new seed).
        """
        follow_up = action_named(action)
        if follow_up is None:
            raise UserError(f"Unknown button action `{action}`.")
        parent = await self._finished_job(parent_job_id, guild_id)
        request = request_from_json(parent.request_json)
        if follow_up.template is None:
            # The same job again with a new seed: a reroll of a variation varies the same image again.
            new = NewJob(
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                kind=JobKind.REROLL,
                prompt=parent.prompt,
                request_json=_with_request(parent.request_json, with_new_seed(request, self._rng)),
                model=parent.model,
                parent_job_id=parent.parent_job_id,
                parent_index=parent.parent_index,
                action=parent.action,
            )
        else:
            outputs = await self.services.store.outputs(parent.id)
            image = next((o for o in outputs if o.idx == index), None)
            if image is None:
                raise UserError(
                    f"Job #{parent.id} has no image {index + 1}; it has {len(outputs)}."
                    if outputs
                    else "The images of this job are no longer kept."
                )
            if not await asyncio.to_thread(os.path.exists, image.path):
                raise UserError("That image was deleted from the bot's storage; it can no longer be used.")
            if not follow_up.keeps_seed:
                request = with_new_seed(request, self._rng)
            try:  # the same check the scheduler makes, so an impossible action is refused now
                template_values(
                    request,
                    filename_prefix="check",
                    action=action,
                    source=SourceImage("check.png", image.width, image.height),
                )
            except RenderError as exc:
                raise UserError(f"That can't be done: {exc}.") from None
            new = NewJob(
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                kind=JobKind(follow_up.template),
                prompt=parent.prompt,
                request_json=_with_request(parent.request_json, request, drop_image_prompt=True),
                model=parent.model,
                parent_job_id=parent.id,
                parent_index=index,
                action=action,
            )
        return await self.submit([new])

    async def unshown_results(
        self, within_s: float = UNSHOWN_WINDOW_S, settled_s: float = 0.0
    ) -> list[Completed]:
        """Completion events for jobs finished in the last `within_s` (but at least `settled_s` ago) whose
        result was never posted (the bot stopped first, or Discord refused it)."""
        now = self.services.clock()
        events = []
        store = self.services.store
        for job in await store.completed_without_result_message(now - within_s, now - settled_s):
            outputs = await self.services.store.outputs(job.id)
            grid = self.services.outputs.grid_path(job.id)
            has_grid = await asyncio.to_thread(grid.is_file)
            events.append(
                Completed(
                    job.id,
                    job.guild_id,
                    paths=tuple(o.path for o in outputs),
                    grid_path=str(grid) if has_grid else None,
                )
            )
        return events

    async def cancel(self, job_id: int, *, guild_id: int, user_id: int, is_admin: bool) -> str:
        """Cancel a job for its owner or an admin; returns what to tell the member."""
        job = await self.services.store.get(job_id)
        refusal = cancel_refusal(job, guild_id=guild_id, actor_id=user_id, admin=is_admin)
        if refusal is CancelRefusal.MISSING or job is None:
            raise UserError("That job does not exist in this server.")
        if refusal is CancelRefusal.NOT_YOURS:
            raise UserError(f"Only <@{job.user_id}> or an admin can cancel job #{job.id}.")
        if refusal is CancelRefusal.ENDED:
            return f"Job #{job.id} has already {_ended(job.status)}."
        previous = await self.services.scheduler.cancel(job.id)
        if previous is None:
            return f"Job #{job.id} had already ended."
        if previous is JobStatus.QUEUED:
            return f"Job #{job.id} is cancelled."
        return (
            f"Job #{job.id} is being stopped on the image server; its message will say when it is cancelled."
        )

    async def job_info(self, job_id: int, guild_id: int) -> str:
        """Seed, parameters, model, backend and a link to what the job was made from (for the Info button)."""
        job = await self.services.store.get(job_id)
        if job is None or job.guild_id != guild_id:
            raise UserError("That job does not exist in this server (it may have been deleted).")
        request = request_from_json(job.request_json)
        action = REROLL if job.kind is JobKind.REROLL else action_named(job.action)
        what = action.title if action is not None else "Imagine"
        lines = [
            f"**Job #{job.id}** · {what} · by <@{job.user_id}>",
            f"**Parameters:** `{_code(format_request(request))}`",
            f"**Seed:** {request.seed}",
            f"**Model:** {request.model}",
            f"**Size:** {request.width}×{request.height} · {request.steps} steps · cfg {request.cfg:g}",
            f"**Backend:** {job.backend or 'not run yet'}",
        ]
        if job.parent_job_id is not None:
            parent = await self.services.store.get(job.parent_job_id)
            image = f" image {job.parent_index + 1}" if job.parent_index is not None else ""
            link = _message_link(parent) if parent is not None else None
            lines.append(f"**Made from:** job #{job.parent_job_id}{image}" + (f" · {link}" if link else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------ message bookkeeping

    async def position_of(self, job_id: int) -> int | None:
        """The job's place in its server's queue, None when it is not waiting."""
        return await self.services.store.position_of(job_id)

    async def get_job(self, job_id: int) -> Job | None:
        """The job row, or None."""
        return await self.services.store.get(job_id)

    async def record_status_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the message that shows the job's position and progress."""
        await self.services.store.set_status_message(job_id, channel_id, message_id)

    async def record_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the message that carries the job's images and buttons."""
        await self.services.store.set_result_message(job_id, channel_id, message_id)

    def model_names(self) -> list[str]:
        """The configured model names, the default first."""
        return [m.name for m in self.config.models]

    # ------------------------------------------------------------------ checks

    def _check_channel(self, channel_id: int, parent_channel_id: int | None) -> None:
        allowed = self.config.discord.allowed_channel_ids
        if (
            not allowed
            or channel_id in allowed
            or (parent_channel_id is not None and parent_channel_id in allowed)
        ):
            return
        where = ", ".join(f"<#{c}>" for c in allowed[:10]) + (" and others" if len(allowed) > 10 else "")
        raise UserError(f"Images can't be made in this channel. Use {where}.")

    def _check_model_option(self, model: str | None) -> str | None:
        if model is None or not model.strip():
            return None
        profile = self.config.model(model.strip())
        if profile is None:
            names = ", ".join(f"`{n}`" for n in self.model_names()[:15])
            raise UserError(f"Unknown model `{_code(model.strip()[:60])}`. Models you can use: {names}.")
        return profile.name

    def _check_banned_words(self, text: str) -> None:
        for word in self.config.discord.banned_words:
            word = word.strip()
            if word and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE):
                raise UserError(
                    f"Your prompt contains `{_code(word)}`, a word this server does not allow. "
                    "Remove it and try again."
                )

    # ------------------------------------------------------------------ parsing

    def _context(self, *, has_image: bool, default_model: str | None) -> ParseContext:
        backend = next((b for b in self.services.scheduler.backends if b.up and b.samplers), None)
        tile_models = set()
        for profile in self.config.models:
            try:
                if self.services.templates.supports_tile(profile):
                    tile_models.add(profile.name)
            except Exception:  # a template problem was logged at startup; --tile is just unavailable
                log.debug("cannot tell whether %s supports --tile", profile.name)
        return ParseContext(
            models=self.config.models,
            styles=self.config.styles,
            limits=self.config.params,
            samplers=backend.samplers if backend else None,
            schedulers=backend.schedulers if backend else None,
            tile_models=frozenset(tile_models),
            has_image=has_image,
            default_model=default_model,
            rng=self._rng,
        )

    def _parse_with_settings(
        self, prompt: str, settings: UserSettings | None, model: str | None, has_image: bool
    ) -> list[GenerationRequest]:
        default_model = model or (settings.model if settings else None)
        if default_model is not None and self.config.model(default_model) is None:
            default_model = None  # a model removed from the config since the member chose it
        ctx = self._context(has_image=has_image, default_model=default_model)
        try:
            requests = parse_prompt(prompt, ctx)
        except ParamError as exc:
            raise UserError(str(exc)) from None
        extra = self._setting_flags(settings, requests)
        if extra:
            try:
                requests = parse_prompt(f"{prompt.rstrip()} {' '.join(extra)}", ctx)
            except ParamError as exc:
                raise UserError(
                    f"Your saved defaults ({', '.join(f'`{e}`' for e in extra)}) don't work with this prompt: "
                    f"{exc} Change them with /settings, or give your own in the prompt."
                ) from None
        negative = (settings.negative or "").strip() if settings else ""
        if negative:
            requests = [_with_negative(r, negative) for r in requests]
        return requests

    def _setting_flags(
        self, settings: UserSettings | None, requests: Sequence[GenerationRequest]
    ) -> list[str]:
        """`--ar` and `--style` from the member's settings, where the prompt gives none."""
        if settings is None:
            return []
        flags = []
        typed = set().union(*(r.explicit for r in requests))
        if settings.aspect and "ar" not in typed:
            if _SETTINGS_ASPECT.fullmatch(settings.aspect.strip()):
                flags.append(f"--ar {settings.aspect.strip()}")
            else:
                log.warning("user %s has an unusable aspect setting %r", settings.user_id, settings.aspect)
        if settings.style and "style" not in typed:
            style = next((s for s in self.config.styles if s.name.lower() == settings.style.lower()), None)
            if style is not None:
                flags.append(f"--style {style.name}")
        return flags

    async def _finished_job(self, job_id: int, guild_id: int) -> Job:
        job = await self.services.store.get(job_id)
        if job is None:
            raise UserError("That job no longer exists; its images were cleared from the bot's storage.")
        if job.guild_id != guild_id:
            raise UserError("That job belongs to another server.")
        if job.status is not JobStatus.COMPLETED:
            raise UserError(f"Job #{job.id} has {_ended(job.status)}, so there are no images to use yet.")
        return job


def _with_request(request_json: str, request: GenerationRequest, *, drop_image_prompt: bool = False) -> str:
    """A stored request with its generation parameters replaced, keeping extra keys (the image prompt)."""
    data = json.loads(request_json)
    extra = {k: v for k, v in data.items() if k == IMAGE_PROMPT_KEY and not drop_image_prompt}
    return json.dumps({**json.loads(request_to_json(request)), **extra}, ensure_ascii=False)


def _with_negative(request: GenerationRequest, negative: str) -> GenerationRequest:
    parts = [p.strip() for p in request.negative.split(",")]
    if negative in parts or negative in request.no:
        return request
    return dataclasses.replace(
        request,
        negative=", ".join(p for p in (request.negative, negative) if p),
        no=(*request.no, negative),
    )


def _ended(status: JobStatus) -> str:
    return {
        JobStatus.QUEUED: "not started",
        JobStatus.SUBMITTED: "not finished",
        JobStatus.RUNNING: "not finished",
        JobStatus.COMPLETED: "finished",
        JobStatus.FAILED: "failed",
        JobStatus.CANCELLED: "been cancelled",
    }[status]


def _code(text: str) -> str:
    """Text made safe for Discord inline code."""
    return text.replace("`", "'")


def _message_link(job: Job) -> str | None:
    channel = job.result_channel_id or job.status_channel_id
    message = job.result_message_id or job.status_message_id
    if channel is None or message is None:
        return None
    return f"https://discord.com/channels/{job.guild_id}/{channel}/{message}"


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


def _write_once(path: Path, data: bytes) -> None:
    """Write `path` atomically unless it exists (names are content hashes); an existing file is touched, so
    retention (which removes unreferenced image prompts by age) sees it as new."""
    if path.exists():
        with contextlib.suppress(OSError):
            os.utime(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
