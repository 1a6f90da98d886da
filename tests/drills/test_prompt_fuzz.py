"""Drill: at least 10,000 generated prompts through the parameter parser; each is parsed or refused cleanly."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy.params import ParseContext
from tests.test_params import _parses_or_refuses, any_text, contexts, flaggy_prompts

EXAMPLES = 10_000


@pytest.mark.slow
def test_any_string_parses_or_raises_param_error_10k_examples(capsys: pytest.CaptureFixture[str]) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.one_of(any_text, flaggy_prompts), ctx=contexts)
    def check(raw: str, ctx: ParseContext) -> None:
        seen["accepted" if _parses_or_refuses(raw, ctx) else "refused"] += 1

    started = time.perf_counter()
    check()
    elapsed = time.perf_counter() - started
    total = seen.total()
    with capsys.disabled():
        print(
            f"\nparsed {total} prompts: {seen['accepted']} accepted, "
            f"{seen['refused']} refused with ParamError ({elapsed:.1f} s)"
        )
    assert total >= EXAMPLES
    assert seen["accepted"] and seen["refused"]  # both paths were exercised
