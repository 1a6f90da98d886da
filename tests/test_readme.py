"""The README's set-up commands stay true: CI runs exactly the documented test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sh_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = next(b.strip() for b in _sh_blocks() if "pytest" in b)
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci_lines == [test_command]


def test_readme_run_command_installs_and_runs_the_bot() -> None:
    run_command = _sh_blocks()[0].strip()
    assert "pip install ." in run_command
    assert run_command.endswith("comfy-imagine run --config config.toml")
