"""`comfy-imagine generate`: one prompt through a ComfyUI backend to image files, without Discord or the queue.

The bot's own pipeline (parse, template, render; `bot.prompt_run` to post, follow and download; the grid
and atomic writes of `bot.outputs`), on the first backend that answers, with a progress bar on stderr and
the written paths on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import signal
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.config import Config
from bot.image_storage import write_atomically
from bot.outputs import grid_of
from bot.prompt_run import NoImages, PromptRun
from bot.terminal_progress import TerminalProgress
from comfy.client import ComfyClient
from comfy.events import Event, Started
from comfy.images import ImageError
from comfy.models import BackendUnavailable, ComfyError, PromptRejected, new_prompt_id
from comfy.object_info import samplers_and_schedulers
from comfy.outcome import Outcome, OutcomeStatus
from comfy.params import GenerationRequest, ParamError, ParseContext, parse_prompt
from comfy.profiles import BackendConfig
from comfy.progress import ProgressSnapshot
from comfy.render import RenderError, template_values
from comfy.workflow import TemplateRegistry
from comfy.workflow_template import TemplateError, WorkflowTemplate

log = logging.getLogger(__name__)

EXIT_OK, EXIT_BACKEND, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CANCEL_TIMEOUT_S = 5.0  # how long Ctrl-C waits for ComfyUI to drop the posted prompts
_STEM_CHARS = 40


class GenerateError(Exception):
    """The backend side failed (unreachable, rejected, failed, lost, timed out); exit code 1.

    `completed` holds the jobs that did finish before the failure, so their files can still be shown.
    """

    def __init__(self, message: str, completed: Sequence[GeneratedJob] = ()) -> None:
        super().__init__(message)
        self.completed = tuple(completed)


class SetupError(Exception):
    """The config cannot serve this command (templates, unknown `--model`); exit code 2."""


@dataclass(frozen=True, slots=True)
class GeneratedJob:
    """One request that ran: the files written for it."""

    request: GenerationRequest
    prompt_id: str
    images: tuple[Path, ...]
    grid: Path | None

    @property
    def paths(self) -> tuple[Path, ...]:
        """The images, then the grid when there is one."""
        return (*self.images, self.grid) if self.grid is not None else self.images


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """Everything one `generate` call wrote, in the order of the requests."""

    backend: str
    jobs: tuple[GeneratedJob, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every written file, job by job."""
        return tuple(path for job in self.jobs for path in job.paths)


# ---------------------------------------------------------------------------------------- pipeline


@dataclass(slots=True)
class _Posted:
    request: GenerationRequest
    template: WorkflowTemplate
    prompt: PromptRun


@dataclass(slots=True)
class _Run:
    """What one `generate` call has posted, so a failure or Ctrl-C can cancel what is left."""

    client: ComfyClient | None = None
    posted: list[_Posted] = field(default_factory=list)


async def generate(
    config: Config,
    prompt: str,
    out_dir: Path,
    *,
    model: str | None = None,
    progress: TerminalProgress | None = None,
    session: aiohttp.ClientSession | None = None,
    base_dir: Path | None = None,
    lost_after_s: float | None = None,
    rng: random.Random | None = None,
) -> GenerateResult:
    """Generate `prompt` on the first reachable backend and write the images and grids into `out_dir`.

    Raises ParamError (the prompt's parameters), SetupError (templates, `model`), GenerateError (the
    backend). Cancelling the task cancels the prompts posted to ComfyUI before it re-raises.
    `lost_after_s` (default `scheduler.backend_grace_s`) bounds how long a dropped connection is waited for.
    """
    registry = _load_templates(config, base_dir)
    if model is not None and config.model(model) is None:
        names = ", ".join(m.name for m in config.models)
        raise SetupError(f"unknown model {model!r} for --model; configured models: {names}")
    ctx = ParseContext(
        models=config.models,
        styles=config.styles,
        limits=config.params,
        tile_models=frozenset(m.name for m in config.models if registry.supports_tile(m)),
        default_model=model,
        rng=rng,
    )
    parse_prompt(prompt, ctx)  # refuse bad parameters before touching the network

    run = _Run()
    try:
        client = await _first_reachable(config.backends, session)
        run.client = client
        samplers, schedulers = await _sampler_lists(client)
        if samplers is not None:
            ctx = dataclasses.replace(ctx, samplers=samplers, schedulers=schedulers)
        requests = parse_prompt(prompt, ctx)
        try:
            await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise GenerateError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
        await _post_all(run, client, registry, config, requests, progress)
        grace = config.scheduler.backend_grace_s if lost_after_s is None else lost_after_s
        jobs = await _follow_all(run, client, out_dir, progress, grace, config.scheduler.job_timeout_s)
        return GenerateResult(client.backend.name, tuple(jobs))
    except BaseException:
        await _cancel_unfinished(run)
        raise
    finally:
        for posted in run.posted:
            posted.prompt.close()
        if run.client is not None:
            await run.client.close()


def _load_templates(config: Config, base_dir: Path | None) -> TemplateRegistry:
    try:
        registry = TemplateRegistry.from_config(config.templates, base_dir or Path.cwd())
        registry.validate_models(config.models)
        return registry
    except TemplateError as exc:
        raise SetupError(f"templates: {exc}") from None


async def _first_reachable(
    backends: Sequence[BackendConfig], session: aiohttp.ClientSession | None
) -> ComfyClient:
    """The client of the first backend (in config order) whose HTTP API and WebSocket both answer."""
    reasons: list[str] = []
    for backend in backends:
        client = ComfyClient(backend, session=session)
        try:
            stats = await client.system_stats()
            await client.connect()
        except ComfyError as exc:
            reason = exc.reason if isinstance(exc, BackendUnavailable) else str(exc)
            log.warning("skipping backend %s (%s): %s", backend.name, backend.base_url, reason)
            reasons.append(f"  {backend.name} ({backend.base_url}): {reason}")
            await client.close()
            continue
        except BaseException:
            await client.close()
            raise
        version = stats.system.comfyui_version or "unknown version"
        log.info("using backend %s (%s), ComfyUI %s", backend.name, backend.base_url, version)
        return client
    raise GenerateError("no ComfyUI backend could be reached:\n" + "\n".join(reasons))


async def _sampler_lists(client: ComfyClient) -> tuple[list[str] | None, list[str] | None]:
    try:
        samplers, schedulers = samplers_and_schedulers(await client.object_info("KSampler"))
    except (ComfyError, TemplateError) as exc:
        log.info("sampler names of %s are unknown, so they are not checked: %s", client.base_url, exc)
        return None, None
    return samplers, schedulers


async def _post_all(
    run: _Run,
    client: ComfyClient,
    registry: TemplateRegistry,
    config: Config,
    requests: Sequence[GenerationRequest],
    progress: TerminalProgress | None,
) -> None:
    """Render and post every request up front, so ComfyUI's queue stays busy between them."""
    graphs = []
    for request in requests:
        profile = config.model(request.model) or config.default_model
        try:
            template = registry.for_model(profile, "txt2img")
            values = template_values(request, filename_prefix=f"comfy-imagine/cli_{request.seed}")
            graphs.append((request, template, template.render(values)))
        except (TemplateError, RenderError) as exc:
            raise SetupError(f"templates: {exc}") from None
    for request, template, graph in graphs:
        posted = _Posted(request, template, PromptRun.new(client, graph, new_prompt_id()))
        run.posted.append(posted)
        try:
            await posted.prompt.post()
        except PromptRejected as exc:
            raise GenerateError(
                f"ComfyUI at {client.base_url} rejected the workflow:\n  {_indent(exc)}"
            ) from None
        except ComfyError as exc:
            raise GenerateError(f"cannot post the prompt: {exc}") from None
    if progress is not None:
        count = len(graphs)
        progress.message(
            f"posted {count} prompt{'s' if count != 1 else ''} to {client.backend.name} ({client.base_url})"
        )


async def _follow_all(
    run: _Run,
    client: ComfyClient,
    out_dir: Path,
    progress: TerminalProgress | None,
    lost_after_s: float,
    job_timeout_s: float,
) -> list[GeneratedJob]:
    jobs: list[GeneratedJob] = []
    failures: list[str] = []
    total = len(run.posted)
    for index, posted in enumerate(run.posted, start=1):
        label = f"[{index}/{total}] {_short(posted.request.text)} (seed {posted.request.seed})"
        if progress is not None:
            progress.begin(label)
        try:
            outcome = await _follow(client, posted, progress, lost_after_s, job_timeout_s)
        except GenerateError as exc:
            raise GenerateError(str(exc), jobs) from None
        if not outcome.ok:
            failures.append(f"{label}: {_failure_text(outcome)}")
            if progress is not None:
                progress.end(outcome.status.value)
            continue
        try:
            job = await _save(posted, outcome, out_dir)
        except _JobFailed as exc:
            failures.append(f"{label}: {exc}")
            if progress is not None:
                progress.end("failed")
            continue
        except OSError as exc:
            raise GenerateError(
                f"cannot write the images into {out_dir}: {exc.strerror or exc}", jobs
            ) from None
        jobs.append(job)
        if progress is not None:
            progress.end("done")
    if failures:
        raise GenerateError("\n".join(failures), jobs)
    return jobs


async def _follow(
    client: ComfyClient,
    posted: _Posted,
    progress: TerminalProgress | None,
    lost_after_s: float,
    job_timeout_s: float,
) -> Outcome:
    """Show one prompt's progress until it ends; give up when the backend stays gone or it runs too long."""
    tick = max(0.05, min(1.0, lost_after_s / 4))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + job_timeout_s
    down_since: float | None = None

    def check() -> None:
        nonlocal down_since
        now = loop.time()
        if client.connected:
            down_since = None
        else:
            down_since = now if down_since is None else down_since
            if now - down_since >= lost_after_s:
                raise GenerateError(
                    f"lost the connection to ComfyUI at {client.base_url} and it did not come back "
                    f"within {lost_after_s:g} s; is it still running?"
                )
        if now >= deadline:
            raise GenerateError(
                f"prompt {posted.prompt.prompt_id} took longer than {job_timeout_s:g} s "
                "(scheduler.job_timeout_s); it was cancelled"
            )

    async def show(event: Event, snapshot: ProgressSnapshot | None) -> None:
        if progress is None:
            return
        if isinstance(event, Started):
            progress.running()
        if snapshot is not None:
            progress.update(snapshot)

    return await posted.prompt.follow(show, check=check, tick_s=tick)


class _JobFailed(Exception):
    """One job's images could not be fetched or read; the others may still be fine."""


async def _save(posted: _Posted, outcome: Outcome, out_dir: Path) -> GeneratedJob:
    try:
        downloaded = await posted.prompt.download(outcome)
    except NoImages:
        raise _JobFailed("ComfyUI finished without producing an image") from None
    except ComfyError as exc:
        raise _JobFailed(f"cannot download the images: {exc}") from None
    images = [data for _, data in downloaded]
    try:
        grid = await asyncio.to_thread(grid_of, images)
    except ImageError as exc:
        raise _JobFailed(f"ComfyUI returned an image that cannot be read ({exc})") from None
    suffixes = [Path(ref.filename).suffix.lower() or ".png" for ref, _ in downloaded]
    paths, grid_path = await asyncio.to_thread(
        _write_files, out_dir, _stem(posted.request), images, suffixes, grid
    )
    return GeneratedJob(posted.request, posted.prompt.prompt_id, paths, grid_path)


def _stem(request: GenerationRequest) -> str:
    """A readable file name start: the prompt's first words and the seed (`a-red-fox_42`)."""
    ascii_text = unicodedata.normalize("NFKD", request.text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:_STEM_CHARS].strip("-")
    return f"{slug or 'image'}_{request.seed}"


def _write_files(
    out_dir: Path, stem: str, images: Sequence[bytes], suffixes: Sequence[str], grid: bytes | None
) -> tuple[tuple[Path, ...], Path | None]:
    """Write `{stem}_{1..n}` and `{stem}_grid.png`, choosing `{stem}-2`, ... rather than overwriting."""
    base, attempt = stem, 1
    while True:
        paths = [out_dir / f"{base}_{i}{suffix}" for i, suffix in enumerate(suffixes, start=1)]
        grid_path = out_dir / f"{base}_grid.png" if grid is not None else None
        if not any(p.exists() for p in [*paths, grid_path] if p is not None):
            break
        attempt += 1
        base = f"{stem}-{attempt}"
    for path, data in zip(paths, images, strict=True):
        write_atomically(path, data)
    if grid_path is not None and grid is not None:
        write_atomically(grid_path, grid)
    return tuple(paths), grid_path


def _failure_text(outcome: Outcome) -> str:
    if outcome.status is OutcomeStatus.FAILED and outcome.error is not None:
        error = outcome.error
        where = (
            f"{error.node_type} (node {error.node_id})" if error.node_type else f"node {error.node_id or '?'}"
        )
        kind = f"{error.exception_type}: " if error.exception_type else ""
        return f"ComfyUI failed in {where}: {kind}{error.exception_message or 'unknown error'}"
    if outcome.status is OutcomeStatus.LOST:
        return f"lost: {outcome.reason}"
    if outcome.status is OutcomeStatus.INTERRUPTED:
        return f"interrupted on the server ({outcome.reason or 'interrupted'})"
    return outcome.reason or outcome.status.value


def _short(text: str, limit: int = 32) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _indent(exc: BaseException) -> str:
    return "\n  ".join(str(exc).splitlines())


async def _cancel_unfinished(run: _Run) -> None:
    """Best effort: take the prompts this run posted and did not finish off ComfyUI's queue."""
    client = run.client
    pending = [posted for posted in run.posted if not posted.prompt.done]
    if client is None or not pending:
        return
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT_S):
            for posted in reversed(pending):  # the waiting ones first, so none starts meanwhile
                await client.cancel(posted.prompt.prompt_id)
                log.info("cancelled prompt %s on %s", posted.prompt.prompt_id, client.base_url)
    except (ComfyError, TimeoutError) as exc:
        log.warning("could not cancel every posted prompt on %s: %s", client.base_url, exc)


# ---------------------------------------------------------------------------------------- command


async def generate_command(
    config: Config,
    prompt: str,
    out_dir: Path,
    *,
    model: str | None = None,
    describe: Callable[[ParamError], str] = str,
) -> int:
    """The `generate` subcommand: run `generate`, print the paths, map errors to exit codes.

    `describe` words a refused prompt (the entry point passes the words members read; bot/ holds none)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        # A second Ctrl-C also cancels the clean-up (taking the prompts off ComfyUI's queue).
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            handled.append(sig)
    progress = TerminalProgress(sys.stderr)
    try:
        result = await generate(config, prompt, out_dir, model=model, progress=progress)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        print("interrupted: the posted prompts were cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ParamError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GenerateError as exc:
        for job in exc.completed:
            for path in job.paths:
                print(path)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    for path in result.paths:
        print(path)
    return EXIT_OK
