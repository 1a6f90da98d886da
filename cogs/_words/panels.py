"""The panels members open: /settings (their defaults for /imagine), /queue and /status."""

from __future__ import annotations

from typing import Final

import discord

from bot.jobs import JobKind
from bot.queue_service import BackendReport, QueueEntry, QueuePage, StatusReport
from cogs._words.jobs import STATUS_WORDS
from cogs._words.text import clip, ordinal

_GIB: Final = 1024**3
_ERROR_CHARS: Final = 200  # of a backend's last error in /status

# ------------------------------------------------------------------------------------------ /settings

SETTINGS_TITLE: Final = "Your /imagine defaults"
SETTINGS_FOOTER: Final = (
    "Applied to your later /imagine prompts unless the prompt says otherwise (--model, --ar, --style, --no). "
    "Your settings follow you to every server."
)
# Each setting's name: its field in the panel, and the placeholder of its select (the negative prompt: the
# title of its modal).
MODEL_NAME: Final = "Model"
ASPECT_NAME: Final = "Aspect ratio"
STYLE_NAME: Final = "Style"
NEGATIVE_NAME: Final = "Negative prompt"
PING_FIELD: Final = "Ping me when an image is ready"
REMIX_FIELD: Final = "Remix"
NOT_SET: Final = "none"  # a style or negative prompt the member has not set
ASPECT_NOT_SET: Final = "the model's own"
# The first option of each select, which clears the setting.
ASPECT_DEFAULT_OPTION: Final = "The model's own shape"
STYLE_DEFAULT_OPTION: Final = "No style"
NEGATIVE_BUTTON: Final = "Negative prompt…"
RESET_BUTTON: Final = "Reset"
# The negative prompt's modal.
NEGATIVE_PLACEHOLDER: Final = "e.g. blurry, text, watermark"
NEGATIVE_LABEL: Final = "What to leave out of your images"
NEGATIVE_HINT: Final = "Added to the negative prompt of your /imagine jobs. Leave empty for none."


def model_value(model: str | None, default_model: str, *, known: bool) -> str:
    """The panel's model line: the member's model, the server default, or a model this bot no longer has."""
    if model is None:
        return f"{default_model} (server default)"
    if known:
        return model
    return f"{model} (no longer on this bot; {default_model} is used)"


def model_default_option(default_model: str) -> str:
    """The model select's first option, which clears the setting."""
    return f"Server default ({default_model})"


def reset_note(had_any: bool) -> str:
    """What the panel says after Reset."""
    return "Your defaults are reset." if had_any else "You had no defaults saved."


def ping_value(ping: bool) -> str:
    """The panel's line for the ping setting."""
    return "yes: your finished images mention you" if ping else "no: your finished images name you silently"


def ping_button(ping: bool) -> str:
    """The label of the panel's ping toggle, saying what it is now."""
    return "Ping: on" if ping else "Ping: off"


def ping_note(ping: bool) -> str:
    """What the panel says right after the member changed the ping setting."""
    if ping:
        return "You'll be pinged when your images are ready."
    return "Your finished images will no longer ping you."


def remix_value(on: bool) -> str:
    """The panel's line for Remix mode."""
    if on:
        return "on: V, 🔄, Vary, Zoom Out and the pan arrows first let you edit the prompt"
    return "off: follow-up buttons start at once (U never asks)"


def remix_button(on: bool) -> str:
    """The label of the panel's Remix toggle, saying what it is now."""
    return "Remix: on" if on else "Remix: off"


def remix_note(on: bool) -> str:
    """What /settings says after Remix was switched."""
    if on:
        return (
            "Remix is on: V, 🔄, Vary, Zoom Out and the pan arrows now first let you edit the prompt "
            "and parameters."
        )
    return "Remix is off: those buttons start at once again."


# ------------------------------------------------------------------------------------------ /queue and /status

QUEUE_TITLE_MEMBER: Final = "Your jobs in this server"
QUEUE_EMPTY_ADMIN: Final = "Nothing is waiting or running in this server."
QUEUE_EMPTY_MEMBER: Final = "You have no jobs waiting or running here. Start one with /imagine."
NO_BACKENDS: Final = "No image servers are configured."
STATUS_QUEUE_FIELD: Final = "This server's queue"
STATUS_TODAY_FIELD: Final = "Today (since 00:00 UTC)"
ALL_BACKENDS_DOWN: Final = "New jobs wait in the queue and start when an image server is back."


def queue_title_admin(guild_name: str | None) -> str:
    """The title of an admin's /queue: the whole server's jobs (`guild_name` already cut to fit)."""
    return f"Queue in {guild_name}" if guild_name else "Queue in this server"


def queue_footer(page: QueuePage) -> str:
    """`Page 1/3 · 2 running · 5 waiting` under a /queue page."""
    return f"Page {page.page + 1}/{page.pages} · {page.in_flight} running · {page.waiting} waiting"


def queue_state(entry: QueueEntry, backend: str | None) -> str:
    """Where a /queue row's job is: `waiting, 3rd in line`, `running on gpu0 (45%)`, or its status.

    `backend` is the entry's backend as shown (escaped for Discord), None when it has none.
    """
    if entry.position is not None:
        return f"waiting, {ordinal(entry.position)} in line"
    if not backend:
        return STATUS_WORDS[entry.status]
    state = f"{STATUS_WORDS[entry.status]} on {backend}"
    return state + f" ({entry.progress:.0%})" if entry.progress > 0 else state


def queue_line(number: int, entry: QueueEntry, *, show_user: bool) -> str:
    """One row of /queue: `3. #42 · running on gpu0 (45%) · @user · a lighthouse…`."""
    backend = discord.utils.escape_markdown(entry.backend) if entry.backend else None
    parts = [f"`#{entry.job_id}`", queue_state(entry, backend)]
    if show_user:
        parts.append(f"<@{entry.user_id}>")
    if entry.kind is not JobKind.IMAGINE:
        parts.append(f"[{entry.kind.value}]")
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(entry.excerpt))
    if text:
        parts.append(text)
    return f"**{number}.** " + " · ".join(parts)


def backends_title(report: StatusReport) -> str:
    """`Image servers: 1 of 2 up`, the title of /status."""
    return f"Image servers: {report.backends_up} of {len(report.backends)} up"


def backend_state(*, up: bool, paused: bool) -> str:
    """How a backend is, after its name in /status: `up`, `down` or `up, paused after a failed prompt`."""
    if paused:
        return "up, paused after a failed prompt"
    return "up" if up else "down"


def backend_version_text(version: str) -> str:
    """`ComfyUI 0.3.64`: the version a backend runs (as shown, escaped for Discord)."""
    return f"ComfyUI {version}"


def backend_load_text(in_flight: int, capacity: int) -> str:
    """`1/2 jobs`: a backend's jobs out of how many it takes at once."""
    return f"{in_flight}/{capacity} jobs"


def backend_memory_text(used: int, total: int, *, on_cpu: bool) -> str:
    """`VRAM 5.2 / 8.0 GiB` in use; a CPU-only server reports its RAM: `RAM (no GPU) 0.7 / 23.5 GiB`."""
    label = "RAM (no GPU)" if on_cpu else "VRAM"
    return f"{label} {max(0, used) / _GIB:.1f} / {max(0, total) / _GIB:.1f} GiB"


def last_error_text(error: str) -> str:
    """The line under a backend that admins read in /status (`error` as shown, escaped and cut)."""
    return f"last error: {error}"


def queue_counts_text(report: StatusReport) -> str:
    """`2 waiting · 1 running`: this server's queue in /status."""
    return f"{report.waiting} waiting · {report.in_flight} running"


def today_counts_text(report: StatusReport) -> str:
    """`5 done · 1 failed · 0 cancelled`: today's finished jobs in /status."""
    return (
        f"{report.completed_today} done · {report.failed_today} failed · {report.cancelled_today} cancelled"
    )


def backend_line(backend: BackendReport, *, admin: bool) -> str:
    """One backend in /status: `🟢 **gpu0** — up · ComfyUI 0.3.64 · 1/2 jobs · VRAM 5.2 / 8.0 GiB`; admins
    also read its last error (which may name internal addresses)."""
    name = discord.utils.escape_markdown(backend.name)
    light = "🟠" if backend.paused else "🟢" if backend.up else "🔴"
    parts = [f"{light} **{name}** — {backend_state(up=backend.up, paused=backend.paused)}"]
    if backend.version:
        parts.append(backend_version_text(discord.utils.escape_markdown(backend.version)))
    if backend.up or backend.in_flight:
        parts.append(backend_load_text(backend.in_flight, backend.capacity))
    if backend.vram_used is not None and backend.vram_total is not None:
        parts.append(backend_memory_text(backend.vram_used, backend.vram_total, on_cpu=backend.on_cpu))
    line = " · ".join(parts)
    if admin and backend.last_error:
        error = discord.utils.escape_markdown(clip(backend.last_error, _ERROR_CHARS))
        line += "\n  " + last_error_text(error)
    return line
