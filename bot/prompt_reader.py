"""Reading a member's prompt: the channel, model and banned-word checks, and parsing with their /settings."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.errors import MemberError, Reason
from bot.jobs import UserSettings
from comfy.params import GenerationRequest, ParamError, ParseContext, parse_prompt

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

_SETTINGS_ASPECT = re.compile(r"\d{1,4}:\d{1,4}")


class PromptReader:
    """Checks what a member asks for and parses it as /imagine does, their saved defaults applied."""

    def __init__(self, services: Services, rng: random.Random) -> None:
        self._services = services
        self._config = services.config
        self._rng = rng

    # ------------------------------------------------------------------ checks

    def check_channel(self, channel_id: int, parent_channel_id: int | None) -> None:
        """Refuse a channel outside `discord.allowed_channel_ids` (a thread counts as its parent channel)."""
        allowed = self._config.discord.allowed_channel_ids
        if (
            not allowed
            or channel_id in allowed
            or (parent_channel_id is not None and parent_channel_id in allowed)
        ):
            return
        raise MemberError(Reason.CHANNEL_NOT_ALLOWED, channels=tuple(allowed))

    def check_model_option(self, model: str | None) -> str | None:
        """The configured name of the model a command option names (None: none given); refuse an unknown one."""
        if model is None or not model.strip():
            return None
        profile = self._config.model(model.strip())
        if profile is None:
            raise MemberError(
                Reason.UNKNOWN_MODEL, value=model.strip(), choices=tuple(m.name for m in self._config.models)
            )
        return profile.name

    def check_banned_words(self, text: str) -> None:
        """Refuse a prompt with a word of `discord.banned_words` (whole words, any case)."""
        for word in self._config.discord.banned_words:
            word = word.strip()
            if word and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE):
                raise MemberError(Reason.BANNED_WORD, value=word)

    # ------------------------------------------------------------------ parsing

    def context(
        self,
        *,
        has_image: bool,
        default_model: str | None,
        custom_zoom: bool = False,
        text_optional: bool = False,
    ) -> ParseContext:
        """What the parser may accept now: the configured models and styles, the samplers a backend reports."""
        backend = next((b for b in self._services.scheduler.backends if b.up and b.samplers), None)
        tile_models = set()
        for profile in self._config.models:
            try:
                if self._services.templates.supports_tile(profile):
                    tile_models.add(profile.name)
            except Exception:  # a template problem was logged at startup; --tile is just unavailable
                log.debug("cannot tell whether %s supports --tile", profile.name)
        return ParseContext(
            models=self._config.models,
            styles=self._config.styles,
            limits=self._config.params,
            samplers=backend.samplers if backend else None,
            schedulers=backend.schedulers if backend else None,
            tile_models=frozenset(tile_models),
            has_image=has_image,
            custom_zoom=custom_zoom,
            text_optional=text_optional,
            default_model=default_model,
            rng=self._rng,
        )

    def parse_with_settings(
        self,
        prompt: str,
        settings: UserSettings | None,
        model: str | None,
        has_image: bool,
        *,
        custom_zoom: bool = False,
        text_optional: bool = False,
    ) -> list[GenerationRequest]:
        """Parse `prompt` with the member's saved aspect, style and negative prompt where it gives none."""
        default_model = model or (settings.model if settings else None)
        if default_model is not None and self._config.model(default_model) is None:
            default_model = None  # a model removed from the config since the member chose it
        ctx = self.context(
            has_image=has_image,
            default_model=default_model,
            custom_zoom=custom_zoom,
            text_optional=text_optional,
        )
        requests = parse_prompt(prompt, ctx)
        extra = self._setting_flags(settings, requests)
        if extra:
            try:
                requests = parse_prompt(f"{prompt.rstrip()} {' '.join(extra)}", ctx)
            except ParamError as exc:
                raise MemberError(
                    Reason.SAVED_DEFAULTS_CLASH, choices=tuple(extra), param_error=exc
                ) from None
        negative = (settings.negative or "").strip() if settings else ""
        if negative:
            requests = [with_negative(r, negative) for r in requests]
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
            style = next((s for s in self._config.styles if s.name.lower() == settings.style.lower()), None)
            if style is not None:
                flags.append(f"--style {style.name}")
        return flags


def with_negative(request: GenerationRequest, negative: str) -> GenerationRequest:
    """The request with the member's saved negative prompt added (once)."""
    parts = [p.strip() for p in request.negative.split(",")]
    if negative in parts or negative in request.no:
        return request
    return dataclasses.replace(
        request,
        negative=", ".join(p for p in (request.negative, negative) if p),
        no=(*request.no, negative),
    )
