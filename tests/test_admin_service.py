"""AdminService against a real SQLite store and scheduler (its one backend unreachable, so jobs stay put)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.admin_service import (
    KEEP,
    NEGATIVE_MAX_CHARS,
    AdminError,
    AdminService,
    choice_label,
    excerpt,
    format_vram,
    midnight_utc,
    page_count,
    parse_job_ref,
)
from bot.config import load_config
from bot.jobs import Job, JobKind, JobStatus, NewJob
from bot.services import Services
from comfy.models import Device, SystemInfo, SystemStats
from comfy.params import ParseContext, parse_prompt, request_to_json
from comfy.profiles import ParamLimits

GUILD = 1001
OTHER_GUILD = 2002
ALICE, CAROL, ADMIN = 11, 12, 13
GIB = 1024**3

EXTRA = """
[[models]]
name = "Other"
checkpoint = "v1-5-pruned-emaonly.safetensors"

[[styles]]
name = "cinematic"
prefix = "cinematic still,"
"""


class Clock:
    """A settable wall clock (unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
async def services(write_config: Callable[..., Path], clock: Clock) -> AsyncIterator[Services]:
    # Port 9 on loopback refuses connections: the backend is down, so nothing leaves the queue by itself.
    config = load_config(write_config(url="http://127.0.0.1:9", extra=EXTRA), env={})
    services = Services(config, clock=clock)
    await services.start()
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
def admin(services: Services) -> AdminService:
    return AdminService(services)


async def submit(
    services: Services, user: int, count: int = 1, *, guild: int = GUILD, prompt: str = "a lighthouse at dusk"
) -> list[Job]:
    context = ParseContext(models=services.config.models)
    new = []
    for index in range(count):
        text = f"{prompt} {index}" if count > 1 else prompt
        (request,) = parse_prompt(text, context)
        new.append(
            NewJob(
                guild_id=guild,
                channel_id=5,
                user_id=user,
                kind=JobKind.IMAGINE,
                prompt=text,
                request_json=request_to_json(request),
                model="tiny",
            )
        )
    return await services.scheduler.submit(new)


async def claim(services: Services) -> Job:
    """Move the next fair job to `submitted` on gpu0, as the dispatcher would."""
    job = await services.store.claim_next("gpu0")
    assert job is not None
    return job


# ------------------------------------------------------------------------------------------ /queue


async def test_admin_sees_the_guilds_running_jobs_first_then_waiting_jobs_in_dispatch_order(
    services: Services, admin: AdminService
) -> None:
    alice = await submit(services, ALICE, 2)
    carol = await submit(services, CAROL, 2)
    await submit(services, CAROL, guild=OTHER_GUILD)
    running = await claim(services)  # alice's first: she came first
    await services.store.mark_running(running.id)

    page = await admin.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=0)

    # Round robin over users: carol's first job goes before alice's second.
    assert [e.job_id for e in page.entries] == [alice[0].id, carol[0].id, alice[1].id, carol[1].id]
    assert [e.position for e in page.entries] == [None, 1, 2, 3]
    assert [e.status_word for e in page.entries] == ["running", "waiting", "waiting", "waiting"]
    assert page.entries[0].backend == "gpu0" and page.entries[1].backend is None
    assert [e.user_id for e in page.entries] == [ALICE, CAROL, ALICE, CAROL]
    assert (page.total, page.in_flight, page.waiting, page.pages, page.admin) == (4, 1, 3, 1, True)


async def test_member_sees_only_their_own_jobs_with_their_place_in_the_guild_queue(
    services: Services, admin: AdminService
) -> None:
    await submit(services, CAROL, 2)
    alice = await submit(services, ALICE, 2)

    page = await admin.queue_page(GUILD, viewer_id=ALICE, admin=False, page=0)

    assert [e.job_id for e in page.entries] == [j.id for j in alice]
    assert [e.position for e in page.entries] == [2, 4]
    assert (page.total, page.waiting, page.admin) == (2, 2, False)


async def test_pages_hold_ten_jobs_and_out_of_range_pages_are_clamped(
    services: Services, admin: AdminService
) -> None:
    await submit(services, ALICE, 23)

    first = await admin.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=-3)
    last = await admin.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=99)

    assert (first.page, first.pages, len(first.entries), first.first_number) == (0, 3, 10, 1)
    assert (first.has_previous, first.has_next) == (False, True)
    assert (last.page, len(last.entries), last.first_number) == (2, 3, 21)
    assert (last.has_previous, last.has_next) == (True, False)
    assert [e.position for e in last.entries] == [21, 22, 23]


async def test_an_empty_queue_still_has_one_page(admin: AdminService) -> None:
    page = await admin.queue_page(GUILD, viewer_id=ALICE, admin=False, page=4)

    assert (page.entries, page.page, page.pages, page.total) == ((), 0, 1, 0)


@pytest.mark.parametrize(
    ("total", "per_page", "pages"), [(0, 10, 1), (1, 10, 1), (10, 10, 1), (11, 10, 2), (25, 10, 3), (7, 3, 3)]
)
def test_page_count(total: int, per_page: int, pages: int) -> None:
    assert page_count(total, per_page) == pages


def test_prompt_excerpts_are_one_trimmed_line() -> None:
    assert excerpt("  a lighthouse\n\tat   dusk ") == "a lighthouse at dusk"
    cut = excerpt("word " * 40, 30)
    assert len(cut) <= 30 and cut.endswith("…") and "\n" not in cut


# ------------------------------------------------------------------------------------------ /cancel


@pytest.mark.parametrize(
    ("actor", "is_admin", "guild", "allowed"),
    [
        pytest.param(ALICE, False, GUILD, True, id="owner"),
        pytest.param(CAROL, False, GUILD, False, id="another-member"),
        pytest.param(ADMIN, True, GUILD, True, id="admin"),
        pytest.param(ADMIN, True, OTHER_GUILD, False, id="admin-of-another-server"),
        pytest.param(ALICE, False, OTHER_GUILD, False, id="owner-from-another-server"),
    ],
)
async def test_who_may_cancel_a_waiting_job(
    services: Services, admin: AdminService, actor: int, is_admin: bool, guild: int, allowed: bool
) -> None:
    (job,) = await submit(services, ALICE)

    if allowed:
        text = await admin.cancel(job.id, guild_id=guild, actor_id=actor, admin=is_admin)
        assert text.startswith(f"Cancelled job #{job.id}") and "a lighthouse at dusk" in text
        assert ("of another member" in text) == (actor != ALICE)
    else:
        with pytest.raises(AdminError) as refused:
            await admin.cancel(job.id, guild_id=guild, actor_id=actor, admin=is_admin)
        expected = "not yours" if guild == GUILD else f"There is no job #{job.id} in this server"
        assert expected in str(refused.value)

    stored = await services.store.get(job.id)
    assert stored is not None
    assert stored.status is (JobStatus.CANCELLED if allowed else JobStatus.QUEUED)


async def test_cancel_of_a_submitted_job_ends_it_even_when_its_backend_is_unreachable(
    services: Services, admin: AdminService
) -> None:
    await submit(services, ALICE)
    job = await claim(services)

    text = await admin.cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)

    assert "it was starting on gpu0" in text
    stored = await services.store.get(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_cancel_of_unknown_or_finished_jobs_is_refused_readably(
    services: Services, admin: AdminService
) -> None:
    (job,) = await submit(services, ALICE)
    await admin.cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)

    with pytest.raises(AdminError, match=r"already ended \(cancelled\)"):
        await admin.cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)
    with pytest.raises(AdminError, match="There is no job #999"):
        await admin.cancel(999, guild_id=GUILD, actor_id=ADMIN, admin=True)


@pytest.mark.parametrize(("text", "job_id"), [("42", 42), ("#42", 42), (" # 7 ", 7)])
def test_job_references_as_members_type_them(text: str, job_id: int) -> None:
    assert parse_job_ref(text) == job_id


@pytest.mark.parametrize("text", ["", "abc", "#", "4 2", "-3", "1" * 19])
def test_job_references_that_are_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(AdminError, match="is not a job"):
        parse_job_ref(text)


async def test_cancel_choices_offer_members_their_own_active_jobs_and_admins_all(
    services: Services, admin: AdminService
) -> None:
    alice = await submit(services, ALICE, 2)
    (carol,) = await submit(services, CAROL, prompt="x" * 400)
    await admin.cancel(alice[0].id, guild_id=GUILD, actor_id=ALICE, admin=False)

    mine = await admin.cancel_choices(GUILD, ALICE, "")
    everyone = await admin.cancel_choices(GUILD, None, "")
    by_number = await admin.cancel_choices(GUILD, None, f"#{carol.id}")

    assert [job_id for _, job_id in mine] == [alice[1].id]
    assert mine[0][0] == f"#{alice[1].id} · waiting · a lighthouse at dusk 1"
    assert [job_id for _, job_id in everyone] == [carol.id, alice[1].id]
    assert all(1 <= len(label) <= 100 for label, _ in everyone)
    assert everyone[0][0].endswith("…")
    assert [job_id for _, job_id in by_number] == [carol.id]


async def test_cancel_choices_stop_at_twenty_five(services: Services, admin: AdminService) -> None:
    await submit(services, ALICE, 30)

    assert len(await admin.cancel_choices(GUILD, None, "")) == 25


def test_choice_label_of_an_empty_prompt_is_just_number_and_state(services: Services) -> None:
    job = Job.from_row(
        {
            **{name: None for name in Job.__slots__},
            "id": 5,
            "kind": "imagine",
            "status": "running",
            "prompt": " \n ",
        }
    )
    assert choice_label(job) == "#5 · running"


# ------------------------------------------------------------------------------------------ /status


@pytest.mark.parametrize(
    ("used", "total", "text"),
    [(3 * GIB, 8 * GIB, "3.0 / 8.0 GiB"), (0, 24 * GIB, "0.0 / 24.0 GiB"), (GIB // 2, GIB, "0.5 / 1.0 GiB")],
)
def test_vram_is_shown_in_gib(used: int, total: int, text: str) -> None:
    assert format_vram(used, total) == text


async def test_status_reports_an_up_backend_with_version_load_and_vram(
    services: Services, admin: AdminService
) -> None:
    backend = services.scheduler.backends[0]
    backend.up, backend.last_error = True, None
    backend.stats = SystemStats(
        system=SystemInfo(comfyui_version="0.3.64"),
        devices=[Device(name="cuda:0", type="cuda", vram_total=8 * GIB, vram_free=3 * GIB)],
    )
    backend.jobs.update({1, 2})

    report = await admin.status(GUILD)

    (shown,) = report.backends
    assert (shown.name, shown.up, shown.version, shown.in_flight, shown.capacity) == (
        "gpu0",
        True,
        "0.3.64",
        2,
        2,
    )
    assert (shown.vram, shown.on_cpu, shown.last_error) == ("5.0 / 8.0 GiB", False, None)
    assert report.backends_up == 1


async def test_status_reports_a_down_backend_with_its_last_error_and_no_stale_vram(
    services: Services, admin: AdminService
) -> None:
    backend = services.scheduler.backends[0]
    backend.stats = SystemStats(devices=[Device(type="cuda", vram_total=8 * GIB, vram_free=GIB)])

    report = await admin.status(GUILD)

    (shown,) = report.backends
    assert not shown.up and shown.vram is None
    assert shown.last_error is not None and "127.0.0.1:9" in shown.last_error
    assert report.backends_up == 0


async def test_status_counts_this_guilds_queue_and_jobs_finished_since_midnight_utc(
    services: Services, admin: AdminService, clock: Clock
) -> None:
    clock.now = NOON - 13 * 3600  # 23:00 the day before
    (yesterday,) = await submit(services, ALICE)
    await admin.cancel(yesterday.id, guild_id=GUILD, actor_id=ALICE, admin=False)
    clock.now = NOON
    await submit(services, ALICE, 3)
    done = await claim(services)
    await services.store.complete(done.id, [])
    cancelled = await claim(services)
    await admin.cancel(cancelled.id, guild_id=GUILD, actor_id=ADMIN, admin=True)
    await claim(services)
    await submit(services, CAROL, guild=OTHER_GUILD)

    report = await admin.status(GUILD)

    assert report.day_start == midnight_utc(NOON) == datetime(2026, 3, 14, tzinfo=UTC).timestamp()
    assert (report.completed_today, report.failed_today, report.cancelled_today) == (1, 0, 1)
    # The third job was claimed: one in flight, and the other guild's job is not counted.
    assert (report.waiting, report.in_flight) == (0, 1)


# ------------------------------------------------------------------------------------------ /settings


async def test_settings_are_validated_normalised_and_saved(services: Services, admin: AdminService) -> None:
    saved = await admin.update_settings(
        ALICE, model="other", aspect=" 21 : 09 ", style="CINEMATIC", negative="  blurry,\n  text "
    )

    assert (saved.model, saved.aspect, saved.style, saved.negative) == (
        "Other",
        "21:9",
        "cinematic",
        "blurry, text",
    )
    assert await services.store.get_user_settings(ALICE) == saved


async def test_omitted_settings_stay_and_none_clears_one(admin: AdminService) -> None:
    await admin.update_settings(ALICE, model="tiny", aspect="2:3")

    after = await admin.update_settings(ALICE, aspect=None, style=KEEP)

    assert (after.model, after.aspect, after.style) == ("tiny", None, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "sdxl"}, "no model called `sdxl`. Models you can use: tiny, Other"),
        ({"style": "anime"}, "no style called `anime`. Styles you can use: cinematic"),
        ({"aspect": "wide"}, "`wide` is not an aspect ratio"),
        ({"aspect": "16:9 --seed 3"}, "is not an aspect ratio"),
        ({"aspect": "{1:1, 2:3}"}, "is not an aspect ratio"),
        ({"aspect": "5:1"}, "may go from 1:4 (tall) to 4:1 (wide)"),
        ({"aspect": "0:1"}, "out of range"),
        ({"aspect": "16000:9000"}, "is not an aspect ratio"),
        ({"negative": "x" * (NEGATIVE_MAX_CHARS + 1)}, f"at most {NEGATIVE_MAX_CHARS} are allowed"),
    ],
)
async def test_settings_that_are_not_allowed_are_refused_and_nothing_is_saved(
    services: Services, admin: AdminService, change: dict[str, str], message: str
) -> None:
    await admin.update_settings(ALICE, model="tiny")

    with pytest.raises(AdminError) as refused:
        await admin.update_settings(ALICE, **({"style": "cinematic"} | change))

    assert message in str(refused.value)
    saved = await admin.get_settings(ALICE)
    assert (saved.model, saved.aspect, saved.style, saved.negative) == ("tiny", None, None, None)


async def test_an_empty_negative_prompt_clears_it(admin: AdminService) -> None:
    await admin.update_settings(ALICE, negative="text")

    assert (await admin.update_settings(ALICE, negative=" \n ")).negative is None


async def test_clear_settings_forgets_everything(services: Services, admin: AdminService) -> None:
    await admin.update_settings(ALICE, model="other")

    assert await admin.clear_settings(ALICE) is True
    assert await admin.clear_settings(ALICE) is False
    assert await services.store.get_user_settings(ALICE) is None
    assert (await admin.get_settings(ALICE)).model is None


def test_aspect_choices_stay_within_max_aspect(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(extra=EXTRA), env={})
    narrow = config.model_copy(update={"params": ParamLimits(max_aspect=2.0)})

    assert AdminService(Services(config)).aspect_choices == [
        "1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4", "21:9"
    ]  # fmt: skip
    assert "21:9" not in AdminService(Services(narrow)).aspect_choices
    assert "16:9" in AdminService(Services(narrow)).aspect_choices
