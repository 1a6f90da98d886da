"""What /imagine, its buttons, its reactions and /cancel do, without Discord: check, queue, follow up, cancel,
describe.

Every refusal a member caused (a banned word, an unknown model, a follow-up that cannot be made, a job of
another server, ...) is raised as `MemberError` with its facts; bad parameters stay `ParamError`, an
impossible render `RenderError`, a limit `LimitExceeded`. The words are chosen in cogs/.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import MemberError, Reason
from bot.events import Completed
from bot.image_prompts import save_image_prompt, with_image
from bot.jobs import (
    IN_FLIGHT_STATUSES,
    CancelRefusal,
    EnqueueLimits,
    ImagePrompt,
    Job,
    JobKind,
    JobNotFound,
    JobStatus,
    NewJob,
    cancel_refusal,
)
from bot.prompt_reader import PromptReader, with_negative
from comfy.actions import Action, action_named
from comfy.params import (
    GenerationRequest,
    blend_request,
    format_request,
    request_from_json,
    request_to_json,
    with_new_seed,
)
from comfy.render import SourceImage, template_values
from comfy.workflow import BLEND_MIN_IMAGES, BLEND_SLOTS

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

_JOB_REF = re.compile(r"\s*#?\s*([0-9]{1,18})\s*")
MAX_CHOICES = 25  # Discord's limit for autocomplete choices
# Results the bot never posted (it stopped first) are posted on start when they are this recent.
UNSHOWN_WINDOW_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job just queued, with its place in its server's queue (None once it left the queue)."""

    job: Job
    position: int | None


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A job cancelled: the job as it was, and the status it left (queued, submitted or running)."""

    job: Job
    previous: JobStatus

    @property
    def was_in_flight(self) -> bool:
        """Whether the job had reached a backend (ComfyUI has to stop it)."""
        return self.previous in IN_FLIGHT_STATUSES


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What the Info button shows: the job, its parsed request, and the job it was made from (if kept)."""

    job: Job
    request: GenerationRequest
    parent: Job | None


def parse_job_ref(text: str) -> int:
    """A job number as a member types it (`42`, `#42`); MemberError NOT_A_JOB otherwise."""
    match = _JOB_REF.fullmatch(text)
    if match is None:
        raise MemberError(Reason.NOT_A_JOB, value=text)
    return int(match.group(1))


class JobService:
    """Jobs as members make and handle them: /imagine, every button under a job, /cancel."""

    def __init__(self, services: Services, *, rng: random.Random | None = None) -> None:
        self.services = services
        self.config = services.config
        self._rng = rng or random.Random()
        self._reader = PromptReader(services, self._rng)

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
        Raises `MemberError` for a channel outside the allow-list, a banned word, an unknown model, saved
        defaults that clash with the prompt or too many jobs for one command; `ParamError` for bad
        parameters.
        """
        self._reader.check_channel(channel_id, parent_channel_id)
        chosen_model = self._reader.check_model_option(model)
        settings = await self.services.store.get_user_settings(user_id)
        requests = self._reader.parse_with_settings(prompt, settings, chosen_model, has_image)
        for request in requests:
            self._reader.check_banned_words(request.text)
        cap = self.config.limits.max_jobs_per_command
        if len(requests) > cap:
            raise MemberError(Reason.TOO_MANY_JOBS, count=len(requests), allowed=cap)
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

    async def prepare_blend(
        self,
        count: int,
        aspect: tuple[int, int],
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        parent_channel_id: int | None = None,
    ) -> NewJob:
        """Check a /blend of `count` images in the `aspect` shape and make its job (images added later by
        `with_blend_images`): the member's default model and negative prompt, the model's pixel area.

        Raises MemberError for a channel outside the allow-list or fewer than 2 (more than 5) images.
        """
        self._reader.check_channel(channel_id, parent_channel_id)
        if not BLEND_MIN_IMAGES <= count <= BLEND_SLOTS:
            raise MemberError(Reason.BLEND_IMAGE_COUNT, count=count, allowed=BLEND_SLOTS)
        settings = await self.services.store.get_user_settings(user_id)
        default_model = settings.model if settings is not None else None
        if default_model is not None and self.config.model(default_model) is None:
            default_model = None
        request = blend_request(self._reader.context(has_image=False, default_model=default_model), aspect)
        negative = (settings.negative or "").strip() if settings else ""
        if negative:
            request = with_negative(request, negative)
        return NewJob(
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            kind=JobKind.BLEND,
            prompt=request.text,
            request_json=request_to_json(request),
            model=request.model,
        )

    @staticmethod
    def with_blend_images(job: NewJob, images: Sequence[ImagePrompt]) -> NewJob:
        """The blend job with the images it mixes (saved by `save_image_prompt`), in order."""
        return dataclasses.replace(job, blend_images=tuple(images))

    async def save_image_prompt(self, data: bytes) -> ImagePrompt:
        """Check an attached image and keep it under the output folder for the scheduler to upload."""
        return await save_image_prompt(self.services.outputs, data)

    @staticmethod
    def with_image(jobs: Sequence[NewJob], image: ImagePrompt) -> list[NewJob]:
        """The jobs turned into image-prompt (img2img) jobs starting from `image`."""
        return with_image(jobs, image)

    async def submit(self, jobs: Sequence[NewJob]) -> list[QueuedJob]:
        """Queue the jobs of one command (limits checked atomically).

        Raises `LimitExceeded` over a limit, MemberError SOURCE_GONE when what they start from was deleted.
        """
        try:
            created = await self.services.scheduler.submit(jobs, limits=self.enqueue_limits())
        except JobNotFound:
            raise MemberError(Reason.SOURCE_GONE) from None
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

    async def follow_up_prompt(
        self, parent_job_id: int, action: str, *, guild_id: int, user_id: int
    ) -> str | None:
        """The prompt a follow-up asks for before it starts, prefilled (the parent's, as `format_request`
        writes it), or None when it starts at once.

        Custom Zoom always asks (with `--zoom` added); the other actions that remix ask when the member
        turned Remix on. Raises MemberError when the job cannot be used, like `follow_up`.
        """
        follow_up = action_named(action)
        if follow_up is None:
            raise MemberError(Reason.UNKNOWN_ACTION, value=action)
        if not follow_up.zoom_from_prompt:
            if not follow_up.remixes:
                return None
            settings = await self.services.store.get_user_settings(user_id)
            if settings is None or not settings.remix:
                return None
        parent = await self._finished_job(parent_job_id, guild_id)
        request = _for_action(request_from_json(parent.request_json), _performed(follow_up, parent))
        return format_request(request)

    async def follow_up(
        self,
        parent_job_id: int,
        index: int,
        action: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        prompt: str | None = None,
    ) -> list[QueuedJob]:
        """Queue a follow-up of image `index` (0-based) of a finished job, owned by the member who asked.

        `action` names a row of comfy.actions: one that starts from that image, or a reroll (the parent's
        own request again with a new seed). `prompt` (Remix, Custom Zoom) replaces the parent's prompt and
        parameters: it is read like /imagine's (the member's /settings applied, the parent's model unless
        it says `--model`), and may make several jobs (`--repeat`, permutations). The seed follows the
        action: a new one unless the action keeps it or the prompt changed it. Raises MemberError when the
        job or image cannot be used or the prompt is refused (ParamError for its parameters),
        `RenderError` when the action cannot be made of that image (a pan past the largest canvas).
        """
        follow_up = action_named(action)
        if follow_up is None:
            raise MemberError(Reason.UNKNOWN_ACTION, value=action)
        parent = await self._finished_job(parent_job_id, guild_id)
        performed = _performed(follow_up, parent)
        parent_request = request_from_json(parent.request_json)
        if prompt is None:
            requests = [_for_action(parent_request, performed)]
        else:
            requests = await self._edited_requests(prompt, parent, parent_request, performed, user_id)
        if not follow_up.keeps_seed:
            requests = [with_new_seed(r, self._rng) if r.seed == parent_request.seed else r for r in requests]
        if follow_up.template is None:
            # The same job again: a reroll of a variation varies the same image again, of a blend blends
            # the same images again.
            new = [
                NewJob(
                    guild_id=guild_id,
                    channel_id=channel_id,
                    user_id=user_id,
                    kind=JobKind.REROLL,
                    prompt=request.text,
                    request_json=request_to_json(request),
                    image_prompt=parent.image_prompt,
                    blend_images=parent.blend_images,
                    model=request.model,
                    parent_job_id=parent.parent_job_id,
                    parent_index=parent.parent_index,
                    action=parent.action,
                )
                for request in requests
            ]
            return await self.submit(new)
        outputs = await self.services.store.outputs(parent.id)
        image = next((o for o in outputs if o.idx == index), None)
        if image is None:
            raise MemberError(Reason.NO_SUCH_IMAGE, job_id=parent.id, number=index + 1, count=len(outputs))
        if not await self.services.outputs.exists(image.path):
            raise MemberError(Reason.IMAGE_DELETED, job_id=parent.id, number=index + 1)
        for request in requests:
            # The same check the scheduler makes, so an impossible action is refused now (RenderError).
            template_values(
                request,
                filename_prefix="check",
                action=follow_up.name,
                source=SourceImage("check.png", image.width, image.height),
            )
        new = [
            NewJob(
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                kind=JobKind(follow_up.template),
                prompt=request.text,
                request_json=request_to_json(request),
                model=request.model,
                parent_job_id=parent.id,
                parent_index=index,
                action=follow_up.name,
            )
            for request in requests
        ]
        return await self.submit(new)

    async def _edited_requests(
        self,
        prompt: str,
        parent: Job,
        parent_request: GenerationRequest,
        performed: Action | None,
        user_id: int,
    ) -> list[GenerationRequest]:
        """A follow-up's prompt as the member edited it, checked like /imagine's."""
        settings = await self.services.store.get_user_settings(user_id)
        requests = self._reader.parse_with_settings(
            prompt,
            settings,
            parent_request.model,
            has_image=parent.image_prompt is not None,
            custom_zoom=performed is not None and performed.zoom_from_prompt,
            text_optional=not parent_request.text,
        )
        for request in requests:
            self._reader.check_banned_words(request.text)
        cap = self.config.limits.max_jobs_per_command
        if len(requests) > cap:
            raise MemberError(Reason.TOO_MANY_JOBS, count=len(requests), allowed=cap)
        return requests

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
            grid = self.services.outputs.grid_ref(job.id)
            has_grid = await self.services.outputs.exists(grid)
            events.append(
                Completed(
                    job.id,
                    job.guild_id,
                    paths=tuple(o.path for o in outputs),
                    grid_path=str(grid) if has_grid else None,
                )
            )
        return events

    async def job_info(self, job_id: int, guild_id: int) -> JobInfo:
        """The job, its request and its parent, for the Info button; MemberError JOB_MISSING if not here."""
        job = await self.services.store.get(job_id)
        if job is None or job.guild_id != guild_id:
            raise MemberError(Reason.JOB_MISSING, job_id=job_id)
        parent = await self.services.store.get(job.parent_job_id) if job.parent_job_id is not None else None
        return JobInfo(job, request_from_json(job.request_json), parent)

    # ------------------------------------------------------------------ reactions on job messages

    async def job_by_message(self, message_id: int, guild_id: int) -> Job | None:
        """The job a message of this server shows (its status or result message), None if none."""
        job = await self.services.store.job_by_message(message_id)
        return job if job is not None and job.guild_id == guild_id else None

    async def result_images(self, job: Job) -> list[bytes]:
        """The job's images still kept, in index order (✉️ sends them); gone ones are left out (logged)."""
        images = []
        for output in await self.services.store.outputs(job.id):
            try:
                images.append(await self.services.outputs.read(output.path))
            except (OSError, ValueError) as exc:
                log.warning("job %s: image %s cannot be read: %s", job.id, output.path, exc)
        return images

    async def read_image(self, ref: str) -> bytes:
        """An image of a job by the reference its result names; OSError when it is gone."""
        return await self.services.outputs.read(ref)

    @staticmethod
    def may_remove_result(job: Job, *, guild_id: int, user_id: int, admin: bool) -> bool:
        """Whether a member may remove a job's result message (❌): its owner or an admin of its server. The
        job and its images stay until retention, so the buttons of its other messages keep working."""
        return job.guild_id == guild_id and (job.user_id == user_id or admin)

    # ------------------------------------------------------------------ cancel (button, /cancel and ❌)

    async def cancel(self, job_id: int, *, guild_id: int, user_id: int, admin: bool) -> Cancellation:
        """Cancel a job for its owner or an admin of its server (the rule of `bot.jobs.cancel_refusal`).

        Raises MemberError JOB_MISSING, NOT_YOURS, ALREADY_ENDED or ENDED_JUST_NOW otherwise.
        """
        job = await self.services.store.get(job_id)
        refusal = cancel_refusal(job, guild_id=guild_id, actor_id=user_id, admin=admin)
        if refusal is CancelRefusal.MISSING or job is None:
            raise MemberError(Reason.JOB_MISSING, job_id=job_id)
        if refusal is CancelRefusal.NOT_YOURS:
            raise MemberError(Reason.NOT_YOURS, job_id=job_id, owner_id=job.user_id)
        if refusal is CancelRefusal.ENDED:
            raise MemberError(Reason.ALREADY_ENDED, job_id=job_id, status=job.status)
        try:
            previous = await self.services.scheduler.cancel(job_id)
        except JobNotFound:
            previous = None
        if previous is None:
            raise MemberError(Reason.ENDED_JUST_NOW, job_id=job_id)
        log.info(
            "job %s (%s, user %s) cancelled by %s%s",
            job_id,
            previous.value,
            job.user_id,
            user_id,
            " (admin)" if admin and user_id != job.user_id else "",
        )
        return Cancellation(job, previous)

    async def cancellable(self, guild_id: int, user_id: int | None, query: str) -> list[Job]:
        """Jobs /cancel offers as the member types: waiting or running, newest first, at most 25.

        `user_id` None lists every job of the guild (admins); `query` matches a number or prompt text.
        """
        return await self.services.store.cancellable_jobs(guild_id, user_id, query[:100], limit=MAX_CHOICES)

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

    async def _finished_job(self, job_id: int, guild_id: int) -> Job:
        job = await self.services.store.get(job_id)
        if job is None:
            raise MemberError(Reason.JOB_MISSING, job_id=job_id)
        if job.guild_id != guild_id:
            raise MemberError(Reason.JOB_ELSEWHERE, job_id=job_id)
        if job.status is not JobStatus.COMPLETED:
            raise MemberError(Reason.JOB_UNFINISHED, job_id=job.id, status=job.status)
        return job


def _performed(follow_up: Action, parent: Job) -> Action | None:
    """The action the new job performs: the follow-up's own, or for a reroll the parent's (None: a prompt
    of its own, a fresh /imagine or /blend)."""
    return follow_up if follow_up.from_image else action_named(parent.action)


def _for_action(request: GenerationRequest, performed: Action | None) -> GenerationRequest:
    """The parent's request as the follow-up starts from it: `--zoom` only for a Custom Zoom (the parent's
    again on a reroll, else the zoom it offers), never carried into anything else."""
    if performed is not None and performed.zoom_from_prompt:
        return dataclasses.replace(request, zoom=request.zoom if request.zoom is not None else performed.zoom)
    return dataclasses.replace(request, zoom=None) if request.zoom is not None else request
