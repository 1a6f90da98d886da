"""The operator's config file: TOML read with tomllib into frozen pydantic models.

Every error names the file and the key path (`backends[0].url: invalid URL 'htp://x'`). The Discord token is
a `SecretStr`: it never appears in a repr, a log line or an error message. `DISCORD_TOKEN` in the
environment overrides `discord.token`; `COMFY_IMAGINE_DATABASE_URL` overrides `storage.database`, whose
PostgreSQL password is kept the same way (`DatabaseUrl`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from comfy.profiles import BackendConfig, ModelProfile, ParamLimits, StylePreset, TemplateConfig

TOKEN_ENV = "DISCORD_TOKEN"
DATABASE_URL_ENV = "COMFY_IMAGINE_DATABASE_URL"
# Per-process settings of a deployment that runs one config file in several containers.
SHARD_COUNT_ENV = "COMFY_IMAGINE_SHARD_COUNT"
SHARD_IDS_ENV = "COMFY_IMAGINE_SHARD_IDS"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_PASSWORD_MASK = "*" * 3  # what a URL's password shows as


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message is for the operator."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (for logs, errors and /status).

    Both places a libpq URL can carry one are covered: the user info and a `password=` (or
    `sslpassword=`) query parameter.
    """
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(an unparseable URL)"
    query = "&".join(
        re.sub(r"^((?:ssl)?password)=.*$", rf"\1={_PASSWORD_MASK}", field, flags=re.IGNORECASE)
        for field in parts.query.split("&")
    )
    parts = parts._replace(query=query)
    if parts.password is None:
        return urlunsplit(parts)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(parts._replace(netloc=f"{user}:{_PASSWORD_MASK}@{host}{port}"))


class DatabaseUrl:
    """A `postgresql://user:password@host:port/db` URL whose password shows nowhere but `secret()`."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in _POSTGRES_SCHEMES:
            raise ValueError("a database URL must start with postgresql://")
        self._url = url

    def secret(self) -> str:
        """The URL in clear, for the one call that connects. Never log it."""
        return self._url

    def __str__(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"DatabaseUrl({redact_url(self._url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate from a string (or an existing DatabaseUrl)."""

        def validate(value: Any) -> DatabaseUrl:
            if isinstance(value, DatabaseUrl):
                return value
            if not isinstance(value, str):
                raise ValueError("expected a postgresql:// URL")
            return cls(value)

        return core_schema.no_info_plain_validator_function(validate)


def _database_location(value: Any) -> Any:
    """`storage.database`: a postgresql:// URL becomes a DatabaseUrl, anything else a file path."""
    if isinstance(value, str) and "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme in _POSTGRES_SCHEMES:
            return DatabaseUrl(value)
        raise ValueError(
            f"{scheme}:// is not supported; use a file path (SQLite) or a postgresql:// URL (PostgreSQL)"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DiscordConfig(_Section):
    """`[discord]`: the bot's identity and who may do what."""

    token: SecretStr | None = None
    guild_ids: list[int] = Field(default_factory=list, description="sync-commands targets for development")
    admin_role_ids: list[int] = Field(default_factory=list)
    allowed_channel_ids: list[int] = Field(default_factory=list, description="empty: every channel")
    banned_words: list[str] = Field(default_factory=list)
    shard_count: int | None = Field(default=None, ge=1, description="the bot's total number of shards")
    shard_ids: list[int] | None = Field(default=None, description="the shards this process connects")

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordConfig:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shard_ids needs shard_count (the bot's total number of shards)")
        if not self.shard_ids:
            raise ValueError("shard_ids is empty; leave it out to run every shard")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad:
            raise ValueError(f"shard_ids {bad} are outside 0..{self.shard_count - 1} (shard_count)")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids lists a shard twice")
        return self

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value


class S3Config(_Section):
    """`[storage.s3]`: keep every image in an S3-compatible bucket (credentials from AWS_* variables)."""

    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    endpoint_url: str | None = Field(
        default=None, description="for MinIO, R2 and other S3-compatible servers"
    )
    region: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url must start with http:// or https:// (got {value!r})")
        return value


class StorageConfig(_Section):
    """`[storage]`: where the job database and the images live (relative paths: beside the config file)."""

    database: Path | DatabaseUrl = Path("data/comfy-imagine.db")
    output_dir: Path = Path("data/outputs")
    retention_days: float = Field(default=30.0, ge=0, description="0 keeps images forever")
    max_total_mb: int = Field(default=0, ge=0, description="0 means no size cap")
    s3: S3Config | None = None

    _database_location = field_validator("database", mode="before")(_database_location)

    @property
    def database_path(self) -> Path | None:
        """The SQLite file, or None when the database is PostgreSQL."""
        return self.database if isinstance(self.database, Path) else None

    @property
    def database_url(self) -> DatabaseUrl | None:
        """The PostgreSQL URL, or None when the database is a SQLite file."""
        return self.database if isinstance(self.database, DatabaseUrl) else None


class LimitsConfig(_Section):
    """`[limits]`: per-user and per-guild caps."""

    per_user_active: int = Field(default=4, ge=1, description="a user's jobs waiting or running")
    per_guild_queued: int = Field(default=100, ge=1, description="jobs waiting in one guild")
    per_user_per_minute: int = Field(default=10, ge=1, description="commands a user may run per minute")
    max_jobs_per_command: int = Field(default=8, ge=1, description="repeat x permutations cap")


class ProgressConfig(_Section):
    """`[progress]`: how the status message is updated."""

    edit_interval_s: float = Field(default=2.0, ge=0.2, le=60.0)
    previews: bool = True
    channel_edits_per_5s: int = Field(
        default=5, ge=1, le=50, description="message edits per 5 s in one channel (Discord allows 5)"
    )


class SchedulerConfig(_Section):
    """`[scheduler]`: dispatch to backends."""

    prefetch: int = Field(default=1, ge=0, le=8, description="prompts kept waiting in ComfyUI's own queue")
    job_timeout_s: float = Field(default=900.0, gt=0)
    health_interval_s: float = Field(default=5.0, gt=0)
    backend_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="wait for a dead backend before re-queueing; pause after a failed prompt",
    )
    max_attempts: int = Field(default=3, ge=1)
    lease_s: float = Field(
        default=15.0,
        gt=0,
        description="how long a backend stays with a process that stopped renewing its lease (PostgreSQL)",
    )


class MetricsConfig(_Section):
    """`[metrics]`: optional Prometheus endpoint and /healthz."""

    port: int | None = Field(default=None, ge=0, le=65535, description="unset: no endpoint; 0: any free port")
    host: str = "127.0.0.1"


class Config(_Section):
    """The whole config file."""

    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    backends: list[BackendConfig] = Field(min_length=1)
    models: list[ModelProfile] = Field(min_length=1)
    styles: list[StylePreset] = Field(default_factory=list)
    templates: list[TemplateConfig] = Field(default_factory=list)
    params: ParamLimits = Field(default_factory=ParamLimits)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    progress: ProgressConfig = Field(default_factory=ProgressConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for key in ("backends", "models", "styles", "templates"):
            seen: dict[str, int] = {}
            for index, item in enumerate(getattr(self, key)):
                folded = item.name.lower()
                if folded in seen:
                    raise ValueError(
                        f"{key}[{index}].name: {item.name!r} is already used by {key}[{seen[folded]}]"
                    )
                seen[folded] = index
        return self

    @property
    def default_model(self) -> ModelProfile:
        """The first `[[models]]` entry."""
        return self.models[0]

    def model(self, name: str) -> ModelProfile | None:
        """The model profile called `name` (case-insensitive), if any."""
        folded = name.lower()
        return next((m for m in self.models if m.name.lower() == folded), None)

    @property
    def token(self) -> str | None:
        """The bot token in clear, for the one call that logs in. Never log it."""
        return self.discord.token.get_secret_value() if self.discord.token else None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config at `path`; `DISCORD_TOKEN` in `env` overrides `discord.token`.

    `COMFY_IMAGINE_DATABASE_URL` overrides `storage.database`, `COMFY_IMAGINE_SHARD_COUNT` and
    `COMFY_IMAGINE_SHARD_IDS` (`"0,1"`) `discord.shard_count` and `discord.shard_ids`. Relative storage and
    template paths are resolved against the config file's folder.
    Raises `ConfigError` with a message naming the file and each bad key.
    """
    env = os.environ if env is None else env
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file (copy config.example.toml to start)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None

    token = env.get(TOKEN_ENV, "").strip()
    if token:
        discord = raw.get("discord")
        raw["discord"] = {**discord, "token": token} if isinstance(discord, dict) else {"token": token}
    database = env.get(DATABASE_URL_ENV, "").strip()
    if database:
        storage = raw.get("storage")
        raw["storage"] = (
            {**storage, "database": database} if isinstance(storage, dict) else {"database": database}
        )
    shards = {
        key: value
        for key, value in (
            ("shard_count", env.get(SHARD_COUNT_ENV, "").strip()),
            ("shard_ids", _id_list(env.get(SHARD_IDS_ENV, ""))),
        )
        if value
    }
    if shards:
        discord = raw.get("discord")
        raw["discord"] = {**discord, **shards} if isinstance(discord, dict) else shards
    base_dir = file.resolve().parent
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(file, exc)) from None
    storage = config.storage.model_copy(
        update={
            "database": (
                _resolve(base_dir, config.storage.database)
                if isinstance(config.storage.database, Path)
                else config.storage.database
            ),
            "output_dir": _resolve(base_dir, config.storage.output_dir),
        }
    )
    templates = [
        t.model_copy(update={"path": str(_resolve(base_dir, Path(t.path)))}) for t in config.templates
    ]
    return config.model_copy(update={"storage": storage, "templates": templates})


def _id_list(text: str) -> list[str]:
    """`"0, 1"` -> `["0", "1"]` (validated as ints with the rest of the config)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _describe(file: Path, exc: ValidationError) -> str:
    lines = [f"{file}: {exc.error_count()} problem(s):"]
    for error in exc.errors(include_url=False):
        lines.append(f"  {_key_path(error['loc'])}: {_error_text(error)}")
    return "\n".join(lines)


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _error_text(error: Any) -> str:
    kind: str = error["type"]
    loc = error["loc"]
    secret = any(str(part) in ("token", "database") for part in loc)
    if kind == "extra_forbidden":
        return _unknown_key_text(loc)
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    if kind.startswith("url") and not secret:
        return f"invalid URL {error['input']!r}: {message}"
    if secret or isinstance(error.get("input"), dict | list):
        return message
    return f"{message} (got {error['input']!r})"


def _unknown_key_text(loc: Sequence[int | str]) -> str:
    name = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def _allowed_keys(parent: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in parent:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        found = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if found is None:
            return []
        model = found
    return list(model.model_fields)
