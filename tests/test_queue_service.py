"""The services behind /queue, /cancel and /status against a real SQLite store and scheduler (its one backend
unreachable, so jobs stay put); /cancel's answers and refusals are checked in the words a member reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import load_config
from bot.errors import MemberError, Reason
from bot.job_service import Cancellation, parse_job_ref
from bot.jobs import Job, JobStatus
from bot.queue_service import QueueService, excerpt, midnight_utc, page_count
from bot.services import Services
from cogs._words.buttons import cancelled_text
from cogs._words.commands import choice_label
from cogs._words.jobs import STATUS_WORDS
from cogs._words.panels import backend_memory_text
from cogs._words.refusals import Where, refusal_text
from comfy.models import Device, SystemInfo, SystemStats
from tests.factories import FakeClock, imagine_job, job_record

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


NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON, frozen=True)


@pytest.fixture
async def services(write_config: Callable[..., Path], clock: FakeClock) -> AsyncIterator[Services]:
    # Port 9 on loopback refuses connections: the backend is down, so nothing leaves the queue by itself.
    config = load_config(write_config(url="http://127.0.0.1:9", extra=EXTRA), env={})
    services = Services(config, clock=clock)
    await services.start()
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
def queue(services: Services) -> QueueService:
    return services.queue


class CancelCommand:
    """What /cancel does with a job number: the job service's cancel, in /cancel's words."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def done(self, job_id: int, *, guild_id: int, actor_id: int, admin: bool) -> Cancellation:
        return await self.services.jobs.cancel(job_id, guild_id=guild_id, user_id=actor_id, admin=admin)

    async def __call__(self, job_id: int, *, guild_id: int, actor_id: int, admin: bool) -> str:
        """The confirmation /cancel answers with; MemberError when it refuses."""
        done = await self.done(job_id, guild_id=guild_id, actor_id=actor_id, admin=admin)
        return cancelled_text(done, where=Where.CANCEL_COMMAND, actor_id=actor_id)


@pytest.fixture
def cancel(services: Services) -> CancelCommand:
    return CancelCommand(services)


def words(error: MemberError) -> str:
    """The words /cancel refuses with."""
    return refusal_text(error, Where.CANCEL_COMMAND)


async def submit(
    services: Services, user: int, count: int = 1, *, guild: int = GUILD, prompt: str = "a lighthouse at dusk"
) -> list[Job]:
    texts = [f"{prompt} {index}" for index in range(count)] if count > 1 else [prompt]
    models = services.config.models
    new = [imagine_job(text, guild=guild, user=user, channel=5, models=models) for text in texts]
    return await services.scheduler.submit(new)


async def claim(services: Services) -> Job:
    """Move the next fair job to `submitted` on gpu0, as the dispatcher would."""
    job = await services.store.claim_next("gpu0")
    assert job is not None
    return job


# ------------------------------------------------------------------------------------------ /queue


async def test_admin_sees_the_guilds_running_jobs_first_then_waiting_jobs_in_dispatch_order(
    services: Services, queue: QueueService
) -> None:
    alice = await submit(services, ALICE, 2)
    carol = await submit(services, CAROL, 2)
    await submit(services, CAROL, guild=OTHER_GUILD)
    running = await claim(services)  # alice's first: she came first
    await services.store.mark_running(running.id)

    page = await queue.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=0)

    # Round robin over users: carol's first job goes before alice's second.
    assert [e.job_id for e in page.entries] == [alice[0].id, carol[0].id, alice[1].id, carol[1].id]
    assert [e.position for e in page.entries] == [None, 1, 2, 3]
    assert [e.status for e in page.entries] == [JobStatus.RUNNING, *[JobStatus.QUEUED] * 3]
    assert [STATUS_WORDS[e.status] for e in page.entries] == ["running", "waiting", "waiting", "waiting"]
    assert page.entries[0].backend == "gpu0" and page.entries[1].backend is None
    assert [e.user_id for e in page.entries] == [ALICE, CAROL, ALICE, CAROL]
    assert (page.total, page.in_flight, page.waiting, page.pages, page.admin) == (4, 1, 3, 1, True)


async def test_member_sees_only_their_own_jobs_with_their_place_in_the_guild_queue(
    services: Services, queue: QueueService
) -> None:
    await submit(services, CAROL, 2)
    alice = await submit(services, ALICE, 2)

    page = await queue.queue_page(GUILD, viewer_id=ALICE, admin=False, page=0)

    assert [e.job_id for e in page.entries] == [j.id for j in alice]
    assert [e.position for e in page.entries] == [2, 4]
    assert (page.total, page.waiting, page.admin) == (2, 2, False)


async def test_pages_hold_ten_jobs_and_out_of_range_pages_are_clamped(
    services: Services, queue: QueueService
) -> None:
    await submit(services, ALICE, 23)

    first = await queue.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=-3)
    last = await queue.queue_page(GUILD, viewer_id=ADMIN, admin=True, page=99)

    assert (first.page, first.pages, len(first.entries), first.first_number) == (0, 3, 10, 1)
    assert (first.has_previous, first.has_next) == (False, True)
    assert (last.page, len(last.entries), last.first_number) == (2, 3, 21)
    assert (last.has_previous, last.has_next) == (True, False)
    assert [e.position for e in last.entries] == [21, 22, 23]


async def test_an_empty_queue_still_has_one_page(queue: QueueService) -> None:
    page = await queue.queue_page(GUILD, viewer_id=ALICE, admin=False, page=4)

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
    services: Services, cancel: CancelCommand, actor: int, is_admin: bool, guild: int, allowed: bool
) -> None:
    (job,) = await submit(services, ALICE)

    if allowed:
        text = await cancel(job.id, guild_id=guild, actor_id=actor, admin=is_admin)
        assert text.startswith(f"Cancelled job #{job.id}") and "a lighthouse at dusk" in text
        assert ("of another member" in text) == (actor != ALICE)
    else:
        with pytest.raises(MemberError) as refused:
            await cancel(job.id, guild_id=guild, actor_id=actor, admin=is_admin)
        reason = Reason.NOT_YOURS if guild == GUILD else Reason.JOB_MISSING
        assert (refused.value.reason, refused.value.job_id) == (reason, job.id)
        expected = (
            f"Job #{job.id} is not yours: you can cancel only your own jobs. "
            "Server admins (Manage Server) can cancel any job."
            if guild == GUILD
            else f"There is no job #{job.id} in this server. Pick one from the list that appears as you type."
        )
        assert words(refused.value) == expected

    stored = await services.store.get(job.id)
    assert stored is not None
    assert stored.status is (JobStatus.CANCELLED if allowed else JobStatus.QUEUED)


async def test_cancel_of_a_submitted_job_ends_it_even_when_its_backend_is_unreachable(
    services: Services, cancel: CancelCommand
) -> None:
    await submit(services, ALICE)
    job = await claim(services)

    text = await cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)

    assert text == f"Cancelled job #{job.id} (it was starting on gpu0): “a lighthouse at dusk”"
    stored = await services.store.get(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_cancel_of_unknown_or_finished_jobs_is_refused_readably(
    services: Services, cancel: CancelCommand
) -> None:
    (job,) = await submit(services, ALICE)
    await cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)

    with pytest.raises(MemberError) as ended:
        await cancel(job.id, guild_id=GUILD, actor_id=ALICE, admin=False)
    assert (ended.value.reason, ended.value.status) == (Reason.ALREADY_ENDED, JobStatus.CANCELLED)
    assert words(ended.value) == f"Job #{job.id} has already ended (cancelled); there is nothing to cancel."
    with pytest.raises(MemberError) as missing:
        await cancel(999, guild_id=GUILD, actor_id=ADMIN, admin=True)
    assert words(missing.value).startswith("There is no job #999 in this server.")


def test_a_job_that_ended_during_its_cancel_is_worded_for_where_it_was_cancelled() -> None:
    # A race (the job ends between the check and the cancel), so only its words are tested here.
    error = MemberError(Reason.ENDED_JUST_NOW, job_id=7)

    assert words(error) == "Job #7 ended just now; there is nothing to cancel."
    assert refusal_text(error, Where.CANCEL_BUTTON) == "Job #7 had already ended."


@pytest.mark.parametrize(("text", "job_id"), [("42", 42), ("#42", 42), (" # 7 ", 7)])
def test_job_references_as_members_type_them(text: str, job_id: int) -> None:
    assert parse_job_ref(text) == job_id


@pytest.mark.parametrize("text", ["", "abc", "#", "4 2", "-3", "1" * 19])
def test_job_references_that_are_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(MemberError) as refused:
        parse_job_ref(text)
    assert (refused.value.reason, refused.value.value) == (Reason.NOT_A_JOB, text)
    assert words(refused.value).endswith(
        " is not a job. Pick a job from the list that appears as you type, or give its number, like `#42`."
    )


async def choices(services: Services, user_id: int | None, query: str) -> list[tuple[str, int]]:
    """/cancel's autocomplete: (label, job id) of the jobs the service offers."""
    return [(choice_label(job), job.id) for job in await services.jobs.cancellable(GUILD, user_id, query)]


async def test_cancel_choices_offer_members_their_own_active_jobs_and_admins_all(
    services: Services, cancel: CancelCommand
) -> None:
    alice = await submit(services, ALICE, 2)
    (carol,) = await submit(services, CAROL, prompt="x" * 400)
    await cancel(alice[0].id, guild_id=GUILD, actor_id=ALICE, admin=False)

    mine = await choices(services, ALICE, "")
    everyone = await choices(services, None, "")
    by_number = await choices(services, None, f"#{carol.id}")

    assert [job_id for _, job_id in mine] == [alice[1].id]
    assert mine[0][0] == f"#{alice[1].id} · waiting · a lighthouse at dusk 1"
    assert [job_id for _, job_id in everyone] == [carol.id, alice[1].id]
    assert all(1 <= len(label) <= 100 for label, _ in everyone)
    assert everyone[0][0].endswith("…")
    assert [job_id for _, job_id in by_number] == [carol.id]


async def test_cancel_choices_stop_at_twenty_five(services: Services) -> None:
    await submit(services, ALICE, 30)

    assert len(await choices(services, None, "")) == 25


def test_choice_label_of_an_empty_prompt_is_just_number_and_state(services: Services) -> None:
    job = job_record(id=5, status=JobStatus.RUNNING, prompt=" \n ")
    assert choice_label(job) == "#5 · running"


# ------------------------------------------------------------------------------------------ /status


@pytest.mark.parametrize(
    ("used", "total", "text"),
    [(3 * GIB, 8 * GIB, "3.0 / 8.0 GiB"), (0, 24 * GIB, "0.0 / 24.0 GiB"), (GIB // 2, GIB, "0.5 / 1.0 GiB")],
)
def test_vram_is_shown_in_gib(used: int, total: int, text: str) -> None:
    assert backend_memory_text(used, total, on_cpu=False) == f"VRAM {text}"
    assert backend_memory_text(used, total, on_cpu=True) == f"RAM (no GPU) {text}"


async def test_status_reports_an_up_backend_with_version_load_and_vram(
    services: Services, queue: QueueService
) -> None:
    backend = services.scheduler.backends[0]
    backend.up, backend.last_error = True, None
    backend.stats = SystemStats(
        system=SystemInfo(comfyui_version="0.3.64"),
        devices=[Device(name="cuda:0", type="cuda", vram_total=8 * GIB, vram_free=3 * GIB)],
    )
    backend.jobs.update({1, 2})

    report = await queue.status(GUILD)

    (shown,) = report.backends
    assert (shown.name, shown.up, shown.version, shown.in_flight, shown.capacity) == (
        "gpu0",
        True,
        "0.3.64",
        2,
        2,
    )
    assert (shown.vram_used, shown.vram_total) == (5 * GIB, 8 * GIB)
    assert (shown.on_cpu, shown.last_error) == (False, None)
    assert report.backends_up == 1


async def test_status_reports_a_down_backend_with_its_last_error_and_no_stale_vram(
    services: Services, queue: QueueService
) -> None:
    backend = services.scheduler.backends[0]
    backend.stats = SystemStats(devices=[Device(type="cuda", vram_total=8 * GIB, vram_free=GIB)])

    report = await queue.status(GUILD)

    (shown,) = report.backends
    assert not shown.up and shown.vram_used is None and shown.vram_total is None
    assert shown.last_error is not None and "127.0.0.1:9" in shown.last_error
    assert report.backends_up == 0


async def test_status_counts_this_guilds_queue_and_jobs_finished_since_midnight_utc(
    services: Services, queue: QueueService, cancel: CancelCommand, clock: FakeClock
) -> None:
    clock.now = NOON - 13 * 3600  # 23:00 the day before
    (yesterday,) = await submit(services, ALICE)
    await cancel(yesterday.id, guild_id=GUILD, actor_id=ALICE, admin=False)
    clock.now = NOON
    await submit(services, ALICE, 3)
    done = await claim(services)
    await services.store.complete(done.id, [])
    cancelled = await claim(services)
    await cancel(cancelled.id, guild_id=GUILD, actor_id=ADMIN, admin=True)
    await claim(services)
    await submit(services, CAROL, guild=OTHER_GUILD)

    report = await queue.status(GUILD)

    assert report.day_start == midnight_utc(NOON) == datetime(2026, 3, 14, tzinfo=UTC).timestamp()
    assert (report.completed_today, report.failed_today, report.cancelled_today) == (1, 0, 1)
    # The third job was claimed: one in flight, and the other guild's job is not counted.
    assert (report.waiting, report.in_flight) == (0, 1)
