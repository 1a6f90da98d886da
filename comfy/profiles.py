"""Operator-facing settings the ComfyUI layer needs: backends, model profiles, style presets, templates.

These are pydantic models because they are read from the operator's config file (an edge). The bot's
config (`bot.config`) composes them; `comfy` itself never reads files or the environment for them.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

TEMPLATE_KINDS = ("txt2img", "img2img", "upscale", "variation", "zoom", "pan", "blend")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendConfig(_Frozen):
    """One ComfyUI server (`[[backends]]`)."""

    name: str = Field(min_length=1, max_length=64)
    url: AnyHttpUrl
    max_running: int = Field(default=1, ge=1, le=64)
    timeout_s: float = Field(default=30.0, gt=0, description="timeout of one HTTP call")

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash, ready for `base_url + "/prompt"`."""
        return str(self.url).rstrip("/")


class ModelProfile(_Frozen):
    """A checkpoint and its defaults (`[[models]]`); the first one configured is the default."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    checkpoint: str = Field(min_length=1)
    width: int = Field(default=512, ge=64, le=8192)
    height: int = Field(default=512, ge=64, le=8192)
    steps: int = Field(default=20, ge=1, le=150)
    cfg: float = Field(default=7.0, ge=1.0, le=30.0)
    sampler: str = "euler"
    scheduler: str = "normal"
    negative: str = ""
    # Which workflow template serves each kind of job; missing kinds use the built-in template.
    templates: dict[str, str] = Field(default_factory=dict)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8, got {value}")
        return value

    @field_validator("templates")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(TEMPLATE_KINDS))
        if unknown:
            raise ValueError(f"unknown template kind(s) {unknown}; allowed: {list(TEMPLATE_KINDS)}")
        return value


class StylePreset(_Frozen):
    """A named style (`[[styles]]`) that `--style NAME` applies: text around the prompt, extra negative."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    prefix: str = ""
    suffix: str = ""
    negative: str = ""


class TemplateConfig(_Frozen):
    """An operator's own workflow template (`[[templates]]`): an API-format JSON file plus bindings.

    `bindings` maps a parameter name (positive, negative, seed, steps, cfg, sampler, scheduler, width,
    height, batch_size, checkpoint, denoise, image, ...) to a node input written `NODE.input`, where NODE
    is a node id or a node's `_meta.title`.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    path: str = Field(min_length=1)
    bindings: dict[str, str | list[str]] = Field(default_factory=dict)
    supports_tile: bool = False

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in TEMPLATE_KINDS:
            raise ValueError(f"unknown kind {value!r}; allowed: {list(TEMPLATE_KINDS)}")
        return value


class ParamLimits(_Frozen):
    """Bounds on what one prompt may ask for (`[params]`)."""

    max_aspect: float = Field(default=4.0, ge=1.0, le=16.0, description="widest ratio, e.g. 4 for 4:1")
    max_repeat: int = Field(default=4, ge=1, le=40)
    max_permutations: int = Field(default=16, ge=1, le=100)
    max_prompt_chars: int = Field(default=1500, ge=10, le=6000)
