"""`comfy-imagine check`: is the config complete, and can every ComfyUI backend run its models and templates?"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import TOKEN_ENV, Config
from comfy.client import ComfyClient
from comfy.models import BackendUnavailable, BadResponse, ComfyError
from comfy.object_info import check_against_object_info, input_choices
from comfy.profiles import TEMPLATE_KINDS, BackendConfig, ModelProfile
from comfy.workflow import TemplateRegistry, load_builtin_templates
from comfy.workflow_template import TemplateError, WorkflowTemplate

_SHOWN_CHOICES = 5


@dataclass(slots=True)
class BackendReport:
    """What `check` found out about one backend."""

    name: str
    url: str
    reachable: bool = False
    version: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checkpoints: dict[str, bool] = field(default_factory=dict)  # model name -> checkpoint present


@dataclass(slots=True)
class CheckReport:
    """The outcome of `check`: config problems (exit 2) and backend problems (exit 1)."""

    config_problems: list[str] = field(default_factory=list)
    backends: list[BackendReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when all is well, 2 for an incomplete config, 1 for an unreachable or unfit backend."""
        if self.config_problems:
            return 2
        if any(b.problems for b in self.backends):
            return 1
        return 0

    def lines(self) -> list[str]:
        """Human-readable lines for the terminal."""
        out = [f"config: {p}" for p in self.config_problems]
        for b in self.backends:
            head = f"backend {b.name} ({b.url}): "
            if b.reachable:
                state = "reachable" if b.problems else "ok"
                summary = f"{state}, ComfyUI {b.version or 'unknown version'}"
                if b.checkpoints:
                    found = ", ".join(f"{m} {'ok' if ok else 'missing'}" for m, ok in b.checkpoints.items())
                    summary += f", checkpoints: {found}"
                out.append(head + summary)
            out.extend(head + problem for problem in b.problems)
            out.extend(head + f"warning: {warning}" for warning in b.warnings)
        if self.exit_code == 0:
            warnings = sum(len(b.warnings) for b in self.backends)
            out.append("all checks passed" + (f" ({warnings} warning(s))" if warnings else ""))
        return out


async def run_checks(
    config: Config, *, session: aiohttp.ClientSession | None = None, base_dir: Path | None = None
) -> CheckReport:
    """Check the config for what it lacks, load its templates, and check every backend concurrently.

    For each reachable backend, `/object_info` tells whether each model's checkpoint is installed and
    whether every template a model uses fits this ComfyUI (node classes, inputs, values). Relative
    template paths are resolved against `base_dir` (default: the working directory; `load_config`
    already makes them absolute).
    """
    report = CheckReport()
    if config.token is None:
        report.config_problems.append(
            f"discord.token is not set: put the bot token in the config file or in the {TOKEN_ENV} "
            "environment variable"
        )
    registry = _load_templates(config, base_dir or Path.cwd(), report)
    owned = session is None
    session = session or aiohttp.ClientSession()
    try:
        report.backends = list(
            await asyncio.gather(
                *(_check_backend(session, b, config.models, registry) for b in config.backends)
            )
        )
    finally:
        if owned:
            await session.close()
    return report


def _load_templates(config: Config, base_dir: Path, report: CheckReport) -> TemplateRegistry:
    """The config's templates; on a problem it is reported and only the built-ins are checked."""
    try:
        registry = TemplateRegistry.from_config(config.templates, base_dir)
    except TemplateError as exc:
        report.config_problems.append(f"templates: {exc}")
        return TemplateRegistry(load_builtin_templates())
    try:
        registry.validate_models(config.models)
    except TemplateError as exc:
        report.config_problems.append(f"models: {exc}")
    return registry


async def _check_backend(
    session: aiohttp.ClientSession,
    backend: BackendConfig,
    models: Sequence[ModelProfile],
    registry: TemplateRegistry,
) -> BackendReport:
    report = BackendReport(name=backend.name, url=backend.base_url)
    async with ComfyClient(backend, session=session) as client:
        try:
            stats = await client.system_stats()
        except ComfyError as exc:
            report.problems.append(f"unreachable: {_unreachable_reason(exc, backend)}")
            return report
        report.reachable = True
        report.version = stats.system.comfyui_version or None
        try:
            object_info = await client.object_info()
        except ComfyError as exc:
            # The bot runs without it (sampler names are then not checked), so this is no failure.
            report.warnings.append(
                f"cannot read /object_info ({_reason(exc)}), so checkpoints and templates were not checked"
            )
            return report
    _check_models(report, object_info, models, registry)
    return report


def _unreachable_reason(exc: ComfyError, backend: BackendConfig) -> str:
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return (
            f"cannot connect ({cause.os_error.strerror or cause.os_error}); is ComfyUI running there? "
            "(see backends[].url)"
        )
    if isinstance(cause, TimeoutError):
        return f"timed out after {backend.timeout_s:g} s"
    return _reason(exc)


def _reason(exc: ComfyError) -> str:
    if isinstance(exc, BackendUnavailable):
        return exc.reason
    text = str(exc)
    if isinstance(exc, BadResponse) and text.endswith(f" ({exc.url})"):
        text = text[: -len(f" ({exc.url})")]
    return text


def _templates_of(model: ModelProfile, registry: TemplateRegistry) -> list[WorkflowTemplate]:
    """Every template serving `model`, one per kind (a wrong choice is a config problem reported earlier)."""
    found: dict[str, WorkflowTemplate] = {}
    for kind in TEMPLATE_KINDS:
        try:
            template = registry.for_model(model, kind)
        except TemplateError:
            continue
        found.setdefault(template.name, template)
    return list(found.values())


def _check_models(
    report: BackendReport,
    object_info: Mapping[str, Any],
    models: Sequence[ModelProfile],
    registry: TemplateRegistry,
) -> None:
    checked: set[str] = set()
    for model in models:
        templates = _templates_of(model, registry)
        problem = _checkpoint_problem(model, templates, object_info)
        report.checkpoints[model.name] = problem is None
        if problem is not None:
            report.problems.append(problem)
        for template in templates:
            if template.name in checked:
                continue
            checked.add(template.name)
            report.problems.extend(check_against_object_info(template, object_info, None))


def _checkpoint_problem(
    model: ModelProfile, templates: Sequence[WorkflowTemplate], object_info: Mapping[str, Any]
) -> str | None:
    """Whether the loader input each template binds `checkpoint` to offers the model's checkpoint."""
    for template in templates:
        for target in template.bindings.get("checkpoint", ()):
            class_type = template.graph[target.node_id]["class_type"]
            choices = input_choices(object_info, class_type, target.input)
            if choices is None or model.checkpoint in choices:
                continue
            return (
                f"model {model.name}: checkpoint {model.checkpoint!r} not found "
                f"(available: {_few(choices, model.checkpoint)})"
            )
    return None


def _few(choices: Sequence[str], wanted: str) -> str:
    if not choices:
        return "none are installed"
    close = difflib.get_close_matches(wanted, choices, n=3, cutoff=0.8)
    shown = [*close, *(c for c in choices if c not in close)][:_SHOWN_CHOICES]
    more = len(choices) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
