"""How jobs look in Discord: progress bar, ETA, status lines, headlines, button custom_ids and layouts, and
the words of refusals and answers (cogs/_words/)."""

from __future__ import annotations

import re

import pytest

from bot.errors import MemberError, Reason
from bot.image_prompts import MAX_IMAGE_PROMPT_BYTES
from bot.job_service import Cancellation, QueuedJob
from bot.jobs import ImagePrompt, JobKind, JobStatus
from cogs._buttons import (
    BUTTON_CLASSES,
    CancelButton,
    FollowUpButton,
    InfoButton,
    cancel_view,
    custom_id,
    follow_up_job,
    grid_view,
    upscale_view,
)
from cogs._errors import member_text
from cogs._render import StatusState
from cogs._words.buttons import cancelled_text, queued_text
from cogs._words.jobs import headline, what_it_is
from cogs._words.refusals import Where, refusal_text
from cogs._words.results import result_headline
from cogs._words.status import format_eta, progress_bar, status_text
from comfy.actions import ACTIONS, ACTIONS_BY_NAME, Action
from comfy.params import ParamError, ParamProblem
from comfy.render import RenderError, RenderProblem
from tests.factories import job_record

BIGGEST_JOB_ID = 2**63 - 1  # SQLite's largest rowid


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, "`░░░░░░░░░░░░░░░░░░░░` 0%"),
        (0.5, "`██████████░░░░░░░░░░` 50%"),
        (0.333, "`██████░░░░░░░░░░░░░░` 33%"),
        (0.999, "`███████████████████░` 99%"),
        (1.0, "`████████████████████` 100%"),
        (1.7, "`████████████████████` 100%"),
        (-1.0, "`░░░░░░░░░░░░░░░░░░░░` 0%"),
        (float("nan"), "`░░░░░░░░░░░░░░░░░░░░` 0%"),
    ],
)
def test_progress_bar_shows_blocks_and_a_floored_percentage(fraction: float, expected: str) -> None:
    assert progress_bar(fraction) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, None),
        (-3.0, None),
        (float("nan"), None),
        (0.4, "under 1 s"),
        (42.4, "42 s"),
        (59.6, "1 min"),
        (120, "2 min"),
        (185, "3 min 5 s"),
        (4800, "1 h 20 min"),
        (7200, "2 h"),
    ],
)
def test_eta_reads_like_a_person_would_say_it(seconds: float | None, expected: str | None) -> None:
    assert format_eta(seconds) == expected


def test_status_text_for_each_stage() -> None:
    assert status_text(position=3) == "⏳ Queued, position 3 in this server"
    assert status_text() == "⏳ Queued"
    waiting = status_text(position=1, waiting="No image server is reachable right now.")
    assert waiting == "⏳ Queued, position 1 in this server\nNo image server is reachable right now."
    assert status_text(started=True) == "🎨 Starting…"
    running = status_text(started=True, fraction=0.25, step=5, total=20, eta_s=12.2)
    assert running == "`█████░░░░░░░░░░░░░░░` 25%\nStep 5/20 · about 12 s left"
    almost = status_text(started=True, fraction=0.95, step=19, total=20, eta_s=0.3)
    assert almost.endswith("Step 19/20 · under 1 s left")  # not "about under 1 s"
    no_eta = status_text(started=True, fraction=1.0, step=20, total=20, eta_s=0.0)
    assert no_eta.endswith("\nStep 20/20")


def test_a_status_message_shows_the_words_of_its_state() -> None:
    state = StatusState(started=True, fraction=0.25, step=5, total=20, eta_s=12.2, preview=b"jpeg")
    assert state.text == status_text(started=True, fraction=0.25, step=5, total=20, eta_s=12.2)
    assert StatusState(position=2, waiting="Waiting.").text == status_text(position=2, waiting="Waiting.")


def test_headline_escapes_markdown_and_mentions_in_the_prompt() -> None:
    request = '{"text": "x"}'
    line = headline(job_record(prompt="**bold** @everyone <@42>", request_json=request))
    assert line == "**\\*\\*bold\\*\\* @\u200beveryone <@42>** - <@3>"  # unparsable request: the raw prompt


def test_headline_names_the_follow_up() -> None:
    assert what_it_is(job_record()) is None
    assert what_it_is(job_record(kind=JobKind.IMG2IMG)) == "Image prompt"
    assert (
        what_it_is(job_record(kind=JobKind.UPSCALE, action="upscale_2x", parent_index=1))
        == "Upscale (2x) of image 2"
    )
    assert what_it_is(job_record(kind=JobKind.VARIATION, action="vary_subtle", parent_index=0)) == (
        "Variations (Subtle) of image 1"
    )
    assert what_it_is(job_record(kind=JobKind.PAN, action="pan_left", parent_index=0)) == "Pan Left"
    assert what_it_is(job_record(kind=JobKind.REROLL, action="vary_strong")) == "Reroll"


def test_result_headline_says_what_the_job_made_as_midjourney_does() -> None:
    request = '{"text": "x"}'  # unparsable: the raw prompt is shown
    assert result_headline(job_record(request_json=request)) == "**a fox** - <@3>"
    upscale = job_record(kind=JobKind.UPSCALE, action="upscale_2x", parent_index=1, request_json=request)
    assert result_headline(upscale) == "**a fox** - Image #2 <@3>"
    vary = job_record(kind=JobKind.VARIATION, action="vary_strong", parent_index=0, request_json=request)
    assert result_headline(vary) == "**a fox** - Variations (Strong) by <@3>"
    zoom = job_record(kind=JobKind.ZOOM, action="zoom_2", parent_index=0, request_json=request)
    assert result_headline(zoom) == "**a fox** - Zoom Out 2x by <@3>"
    reroll = job_record(kind=JobKind.REROLL, action="vary_strong", parent_index=0, request_json=request)
    assert result_headline(reroll) == "**a fox** - Reroll by <@3>"
    image = ImagePrompt("image_prompts/a.png", 64, 64)
    blend = job_record(kind=JobKind.BLEND, blend_images=(image, image), request_json=request)
    assert result_headline(blend) == "**a fox** - Blend of 2 images by <@3>"


def test_follow_up_job_reads_the_job_of_follow_up_buttons_only() -> None:
    assert follow_up_job("ci:upscale_2x:42:3") == 42
    assert follow_up_job("ci:reroll:42") == 42
    assert follow_up_job("ci:cancel:42") is None
    assert follow_up_job("ci:info:42") is None
    assert follow_up_job("settings:42:ping") is None


async def test_every_custom_id_fits_discord_and_matches_exactly_one_button_class() -> None:
    views = [grid_view(BIGGEST_JOB_ID), upscale_view(BIGGEST_JOB_ID), cancel_view(BIGGEST_JOB_ID)]
    ids = [item.custom_id for view in views for item in view.children]  # type: ignore[attr-defined]
    assert len(ids) == 9 + 11 + 1 and len(set(ids)) == len(ids)
    for value in ids:
        assert len(value) <= 100
        matching = [c for c in BUTTON_CLASSES if c.__discord_ui_compiled_template__.fullmatch(value)]
        assert len(matching) == 1, value
    assert max(len(i) for i in ids) == len(f"ci:vary_strong:{BIGGEST_JOB_ID}:4")


def test_custom_ids_carry_action_job_and_image_number() -> None:
    assert custom_id("upscale_2x", 7, 2) == "ci:upscale_2x:7:2"
    assert custom_id("reroll", 7) == "ci:reroll:7"
    match = FollowUpButton.__discord_ui_compiled_template__.fullmatch("ci:zoom_1.5:99")
    assert match is not None and (match["action"], match["job"], match["index"]) == ("zoom_1.5", "99", None)
    assert CancelButton.__discord_ui_compiled_template__.fullmatch("ci:cancel:5")
    assert InfoButton.__discord_ui_compiled_template__.fullmatch("ci:info:5")
    for foreign in ("ci:delete:5", "ci:upscale_2x:5:0", "ci:upscale_2x:x", "queue:1:2:next", "ci:cancel:5:1"):
        assert not any(c.__discord_ui_compiled_template__.fullmatch(foreign) for c in BUTTON_CLASSES), foreign
    with pytest.raises(ValueError, match="longer than 100"):
        custom_id("x" * 96, 1)


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
async def test_every_action_of_the_table_survives_its_custom_id(action: Action) -> None:
    for number in (None, 3):
        match = FollowUpButton.__discord_ui_compiled_template__.fullmatch(custom_id(action.name, 123, number))
        assert match is not None
        button = await FollowUpButton.from_custom_id(None, None, match)  # type: ignore[arg-type]
        assert (button.action, button.job_id, button.number) == (action, 123, number)


async def test_grid_and_upscale_layouts() -> None:
    def layout(view: object) -> list[tuple[int | None, str]]:
        return [
            (item.item.row, item.item.label or str(item.item.emoji))  # type: ignore[attr-defined]
            for item in view.children  # type: ignore[attr-defined]
        ]

    assert layout(grid_view(1)) == [
        (0, "U1"),
        (0, "U2"),
        (0, "U3"),
        (0, "U4"),
        (0, "🔄"),
        (1, "V1"),
        (1, "V2"),
        (1, "V3"),
        (1, "V4"),
    ]
    assert [label for _, label in layout(upscale_view(1))] == [
        "Vary (Strong)",
        "Vary (Subtle)",
        "Upscale 2x",
        "Zoom Out 1.5x",
        "Zoom Out 2x",
        "Custom Zoom",
        "Info",
        "⬅️",
        "➡️",
        "⬆️",
        "⬇️",
    ]
    assert {row for row, _ in layout(upscale_view(1))} == {0, 1, 2}
    assert re.fullmatch(r"ci:cancel:\d+", cancel_view(1).children[0].custom_id)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ words


EVERY_FACT = MemberError(
    Reason.UNKNOWN_MODEL,  # replaced per reason below
    job_id=42,
    owner_id=7,
    status=JobStatus.RUNNING,
    value="sdxl",
    count=3,
    allowed=2,
    number=2,
    width=9000,
    height=512,
    choices=("tiny", "other"),
    channels=(111, 222),
    detail="the parser's words.",
)


def with_reason(reason: Reason, **changes: object) -> MemberError:
    facts = {name: getattr(EVERY_FACT, name) for name in (
        "job_id", "owner_id", "status", "value", "count", "allowed", "number", "width", "height", "choices",
        "channels", "detail",
    )}  # fmt: skip
    return MemberError(reason, **(facts | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("where", list(Where), ids=lambda w: w.name)
@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_has_words_wherever_it_happens(reason: Reason, where: Where) -> None:
    error = with_reason(reason)
    words = refusal_text(error, where)
    assert words and "None" not in words and reason.value not in words
    assert member_text(error, where) == words
    assert reason.value in str(error)  # the log shows the reason and its facts, not the words


@pytest.mark.parametrize(
    ("error", "where", "words"),
    [
        (
            with_reason(Reason.CHANNEL_NOT_ALLOWED, channels=tuple(range(1, 13))),
            Where.ANY,
            "Images can't be made in this channel. Use <#1>, <#2>, <#3>, <#4>, <#5>, <#6>, <#7>, <#8>, <#9>, "
            "<#10> and others.",
        ),
        (
            with_reason(
                Reason.IMAGE_TOO_LARGE, count=11 * 1_048_576, allowed=MAX_IMAGE_PROMPT_BYTES, value=None
            ),
            Where.ANY,
            "The attached image is 11.0 MB; at most 10 MB are allowed.",
        ),
        (
            with_reason(
                Reason.IMAGE_TOO_LARGE, count=11 * 1_048_576, allowed=MAX_IMAGE_PROMPT_BYTES, value="big.png"
            ),
            Where.ANY,
            "`big.png` is 11.0 MB; at most 10 MB are allowed.",
        ),
        (
            with_reason(Reason.BLEND_IMAGE_COUNT, count=1, allowed=5),
            Where.ANY,
            "/blend mixes 2 to 5 images; you attached 1. Attach each image in its own option (image1, image2, ...).",
        ),
        (
            with_reason(Reason.IMAGE_TOO_BIG, allowed=8192),
            Where.ANY,
            "The attached image is 9000×512 pixels; at most 8192 a side.",
        ),
        (
            with_reason(Reason.NOT_AN_IMAGE, value="notes.txt", detail="text/plain"),
            Where.ANY,
            "`notes.txt` is not an image (text/plain); attach a PNG, JPEG or WebP.",
        ),
        (
            with_reason(Reason.IMAGE_DOWNLOAD_FAILED),
            Where.ANY,
            "The attached image could not be downloaded from Discord; try again.",
        ),
        (with_reason(Reason.SOURCE_GONE), Where.FOLLOW_UP, "The image this starts from no longer exists."),
        (
            with_reason(Reason.NO_SUCH_IMAGE, count=0),
            Where.FOLLOW_UP,
            "The images of this job are no longer kept.",
        ),
        (
            with_reason(Reason.BANNED_WORD, value="a `tick`"),
            Where.ANY,
            "Your prompt contains `a 'tick'`, a word this server does not allow. Remove it and try again.",
        ),
        (
            RenderError(RenderProblem.CANVAS_TOO_LARGE, side=4096),
            Where.FOLLOW_UP,
            "That can't be done: the picture cannot grow past 4096 pixels a side; try zooming out.",
        ),
        (
            ParamError(ParamProblem.BAD_ASPECT, flag="ar", spelling="--ar", value="3x2"),
            Where.ANY,
            "`--ar` must be two whole numbers like `16:9` or `2:3`; you gave `3x2`.",
        ),
    ],
)
def test_refusals_in_the_words_members_have_always_read(
    error: MemberError | ParamError | RenderError, where: Where, words: str
) -> None:
    assert refusal_text(error, where) == words


def test_answers_to_buttons_and_commands() -> None:
    queued = QueuedJob(job_record(id=43), position=1)
    upscale = ACTIONS_BY_NAME["upscale_2x"]
    assert (
        queued_text(upscale, 2, queued)
        == "Queued: Upscale (2x) of image 2 (job #43, position 1 in this server)."
    )
    assert queued_text(upscale, None, QueuedJob(job_record(id=43), None)) == "Queued: Upscale (2x) (job #43)."
    running = Cancellation(job_record(status=JobStatus.RUNNING, backend="gpu0", user_id=3), JobStatus.RUNNING)
    assert cancelled_text(running, where=Where.CANCEL_COMMAND, actor_id=9) == (
        "Cancelled job #12 of another member (it was running on gpu0): “a fox”"
    )
    assert cancelled_text(running, where=Where.CANCEL_COMMAND, actor_id=3).startswith("Cancelled job #12 (it")
