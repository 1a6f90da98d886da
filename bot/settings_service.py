"""What /settings does, without Discord: a member's defaults for /imagine, validated before they are saved,
and whether their finished images ping them, and Remix mode."""

from __future__ import annotations

import logging
import re
from enum import Enum
from typing import TYPE_CHECKING, Final

from bot.errors import MemberError, Reason
from bot.jobs import UserSettings
from bot.store.base import UNSET
from comfy.params import ParseContext, parse_prompt

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

NEGATIVE_MAX_CHARS: Final = 500
# The aspect ratios /settings offers, widest last; those beyond `[params] max_aspect` are left out.
ASPECT_PRESETS: Final = ("1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4", "21:9")
_ASPECT_TEXT = re.compile(r"\s*([0-9]{1,4})\s*:\s*([0-9]{1,4})\s*")


class Keep(Enum):
    """The type of KEEP."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
"""Leave a setting as it is (the default of every `update_settings` argument); None clears one."""


class SettingsService:
    """A member's defaults for /imagine (global per member, like Midjourney's /settings)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    @property
    def model_names(self) -> list[str]:
        """The configured models, the default first."""
        return [m.name for m in self._services.config.models]

    @property
    def style_names(self) -> list[str]:
        """The configured styles."""
        return [s.name for s in self._services.config.styles]

    @property
    def aspect_choices(self) -> list[str]:
        """The aspect ratios /settings offers, within `[params] max_aspect`."""
        widest = self._services.config.params.max_aspect
        found = []
        for preset in ASPECT_PRESETS:
            width, height = (int(side) for side in preset.split(":"))
            if max(width / height, height / width) <= widest:
                found.append(preset)
        return found

    async def get_settings(self, user_id: int) -> UserSettings:
        """The member's saved defaults (all None when they never saved any)."""
        saved = await self._services.store.get_user_settings(user_id)
        return saved if saved is not None else UserSettings(user_id=user_id)

    async def update_settings(
        self,
        user_id: int,
        *,
        model: str | Keep | None = KEEP,
        aspect: str | Keep | None = KEEP,
        style: str | Keep | None = KEEP,
        negative: str | Keep | None = KEEP,
    ) -> UserSettings:
        """Validate and save some of the member's defaults; None clears one, KEEP leaves it.

        Raises MemberError or ParamError (nothing saved) when a value is not allowed.
        """
        changes: dict[str, str | None] = {}
        if model is not KEEP:
            changes["model"] = None if model is None else self._model(model)
        if aspect is not KEEP:
            changes["aspect"] = None if aspect is None else self._aspect(aspect)
        if style is not KEEP:
            changes["style"] = None if style is None else self._style(style)
        if negative is not KEEP:
            changes["negative"] = None if negative is None else _negative(negative)
        if not changes:
            return await self.get_settings(user_id)
        saved = await self._services.store.update_user_settings(
            user_id,
            model=changes.get("model", UNSET),
            aspect=changes.get("aspect", UNSET),
            style=changes.get("style", UNSET),
            negative=changes.get("negative", UNSET),
        )
        log.debug("user %s changed settings %s", user_id, sorted(changes))
        return saved

    async def set_ping(self, user_id: int, ping: bool) -> UserSettings:
        """Whether the member's finished images mention (notify) them; on until they turn it off."""
        saved = await self._services.store.update_user_settings(user_id, ping=ping)
        log.debug("user %s turned the ping %s", user_id, "on" if ping else "off")
        return saved

    async def set_remix(self, user_id: int, remix: bool) -> UserSettings:
        """Turn the member's Remix mode on or off: with it on, follow-ups first ask for the prompt."""
        saved = await self._services.store.update_user_settings(user_id, remix=remix)
        log.debug("user %s turned Remix %s", user_id, "on" if remix else "off")
        return saved

    async def clear_settings(self, user_id: int) -> bool:
        """Forget all of the member's defaults; True when there were any."""
        return await self._services.store.clear_user_settings(user_id)

    def _model(self, name: str) -> str:
        found = self._services.config.model(name.strip())
        if found is None:
            raise MemberError(Reason.UNKNOWN_MODEL, value=name, choices=tuple(self.model_names))
        return found.name

    def _style(self, name: str) -> str:
        folded = name.strip().lower()
        for style in self._services.config.styles:
            if style.name.lower() == folded:
                return style.name
        if not self.style_names:
            raise MemberError(Reason.NO_STYLES, value=name)
        raise MemberError(Reason.UNKNOWN_STYLE, value=name, choices=tuple(self.style_names))

    def _aspect(self, value: str) -> str:
        match = _ASPECT_TEXT.fullmatch(value)
        if match is None:
            raise MemberError(Reason.NOT_AN_ASPECT, value=value)
        # Kept as written (21:9 stays 21:9, not 7:3), so the panel shows what the member picked.
        aspect = f"{int(match.group(1))}:{int(match.group(2))}"
        config = self._services.config
        context = ParseContext(models=config.models, styles=config.styles, limits=config.params)
        # The same rules /imagine applies to `--ar` (ParamError), so a saved default never fails a prompt.
        parse_prompt(f"x --ar {aspect}", context)
        return aspect


def _negative(text: str) -> str | None:
    line = " ".join(text.split())
    if not line:
        return None
    if len(line) > NEGATIVE_MAX_CHARS:
        raise MemberError(Reason.NEGATIVE_TOO_LONG, count=len(line), allowed=NEGATIVE_MAX_CHARS)
    return line
