"""The layers keep their direction (cogs -> bot -> comfy), read from the imports with ast."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Only these bot/ modules may import discord: the entry point and the Bot subclass.
DISCORD_ALLOWED_IN_BOT = {"__main__.py", "imagine_bot.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("comfy"), ids=lambda p: p.name)
def test_comfy_imports_nothing_from_discord_bot_or_cogs(path: Path) -> None:
    assert not _imports(path) & {"discord", "bot", "cogs"}


@pytest.mark.parametrize("path", _modules("bot"), ids=lambda p: p.name)
def test_bot_never_imports_cogs_and_only_the_bot_class_imports_discord(path: Path) -> None:
    imports = _imports(path)
    if path.name != "__main__.py":  # the entry point composes every layer (the CLI words refusals as cogs do)
        assert "cogs" not in imports
    if path.name not in DISCORD_ALLOWED_IN_BOT:
        assert "discord" not in imports, (
            f"{path.name} imports discord; keep Discord in cogs/ or the Bot class"
        )


def _extension_modules() -> list[Path]:
    return [p for p in _modules("cogs") if not p.name.startswith("_")]


def test_every_cog_extension_has_an_async_setup() -> None:
    for path in _extension_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        setups = [n for n in tree.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "setup"]
        assert setups, f"{path} is an extension module without `async def setup(bot)`"


def test_every_listed_extension_exists_and_imports() -> None:
    from bot.imagine_bot import DEFAULT_EXTENSIONS

    listed = set(DEFAULT_EXTENSIONS)
    found = {f"cogs.{p.stem}" for p in _extension_modules()}
    assert listed == found, "DEFAULT_EXTENSIONS and the extension modules in cogs/ differ"
    for name in listed:
        assert hasattr(importlib.import_module(name), "setup")


# ------------------------------------------------------------------------------------------ cogs/ has no cycle


def _cogs_imported_by(path: Path) -> set[str]:
    """The cogs/ modules a cogs/ module imports (at run time or for type checking alike)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cogs."))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from . import x, from ._y import z
                module = "cogs" + (f".{module}" if module else "")
            if module == "cogs":
                found.update(f"cogs.{alias.name}" for alias in node.names)
            elif module.startswith("cogs."):
                found.add(module)
    return found


def _import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (module -> modules it imports) as a path that returns to its start, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, [*path, module])
            if cycle is not None:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _import_cycle({"a": {"a"}}) == ["a", "a"]


def test_cogs_modules_import_each_other_without_a_cycle() -> None:
    graph = {f"cogs.{path.stem}": _cogs_imported_by(path) for path in _modules("cogs")}
    assert graph["cogs._buttons"], "the import reader found nothing; it is broken"
    cycle = _import_cycle(graph)
    assert cycle is None, f"import cycle in cogs/: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize("path", _modules("cogs"), ids=lambda p: p.name)
def test_cogs_take_the_services_the_bot_built_instead_of_looking_up_cogs_or_building_services(
    path: Path,
) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = {
        f.attr if isinstance(f, ast.Attribute) else f.id
        for f in calls
        if isinstance(f, ast.Attribute | ast.Name)
    }
    assert "get_cog" not in names, f"{path.name} looks a cog up; take what it needs from the bot"
    built = sorted(name for name in names if name.endswith("Service") or name == "Services")
    assert not built, f"{path.name} builds {built}; use the ones in bot.services"


# ------------------------------------------------------------------------------------------ words live in cogs/

DISCORD_MARKUP = ("<@", "<#", "discord.com/channels", "**", "`")


def _strings_outside_docstrings_and_logs(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skipped.add(id(node.value))  # a docstring (of a module, class, function or attribute)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logging"}
        ):
            skipped.update(id(n) for arg in node.args for n in ast.walk(arg))  # for operators
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped
    ]


# The errors members read carry facts (a Reason, a ParamProblem, a RenderProblem); cogs/ choose the words.
MEMBER_ERRORS = frozenset({"MemberError", "ParamError", "RenderError"})


def _marked(path: Path) -> list[tuple[int, str]]:
    return [(line, text) for line, text in _strings_outside_docstrings_and_logs(path) if any(m in text for m in DISCORD_MARKUP)]  # fmt: skip


@pytest.mark.parametrize("path", _modules("bot"), ids=lambda p: p.name)
def test_bot_writes_no_discord_markup_members_read_their_words_from_cogs(path: Path) -> None:
    marked = _marked(path)
    assert not marked, f"{path.name} writes Discord markup (the words belong in cogs/_messages.py): {marked}"


@pytest.mark.parametrize("path", _modules("comfy"), ids=lambda p: p.name)
def test_comfy_writes_no_discord_markup_members_read_their_words_from_cogs(path: Path) -> None:
    marked = _marked(path)
    assert not marked, f"{path.name} writes Discord markup (the words belong in cogs/): {marked}"


def _error_calls(source: str, names: frozenset[str]) -> list[tuple[int, str, bool]]:
    """Where `source` builds one of the exceptions `names`: (line, name, whether it gives words of its own,
    a literal or an f-string, as a positional argument)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        worded = any(
            isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str))
            for arg in node.args
        )
        if name in names:
            found.append((node.lineno, name, worded))
    return found


def test_the_worded_error_finder_finds_words() -> None:
    source = (
        'raise RenderError(f"too big: {n}")\nraise params.ParamError("no")\nRenderError(text)\nOther("x")'
    )
    found = _error_calls(source, frozenset({"RenderError", "ParamError"}))
    assert found == [(1, "RenderError", True), (2, "ParamError", True), (3, "RenderError", False)]


def test_errors_members_read_are_built_from_facts_and_never_worded_in_bot_or_comfy() -> None:
    calls = [
        (str(path.relative_to(ROOT)), line, name, worded)
        for package in ("bot", "comfy")
        for path in _modules(package)
        for line, name, worded in _error_calls(path.read_text(encoding="utf-8"), MEMBER_ERRORS)
    ]
    assert {name for _, _, name, _ in calls} == MEMBER_ERRORS, "the finder missed an error; it is broken"
    worded = [(path, line, name) for path, line, name, words in calls if words]
    assert not worded, f"members read these errors; give them facts and word them in cogs/: {worded}"


# ------------------------------------------------------------------------------------------ one home per name


def _source_strings() -> list[tuple[Path, int, str]]:
    return [
        (path, line, text)
        for package in ("bot", "cogs", "comfy")
        for path in _modules(package)
        for line, text in _strings_outside_docstrings_and_logs(path)
    ]


def test_action_names_and_button_custom_ids_are_written_once() -> None:
    from bot.jobs import JobKind
    from comfy.actions import ACTIONS

    # "reroll" is also a job kind (bot/jobs.py), a different thing with the same word.
    names = {action.name for action in ACTIONS} - {kind.value for kind in JobKind}
    strings = _source_strings()
    elsewhere = [
        (path.name, line, text)
        for path, line, text in strings
        if path != ROOT / "comfy" / "actions.py" and any(name in text for name in names)
    ]
    assert not elsewhere, f"action names belong in comfy/actions.py only: {elsewhere}"
    custom_ids = [(path.name, line, text) for path, line, text in strings if text.startswith("ci:")]
    assert not custom_ids, f"button custom_ids are built by cogs._buttons.custom_id only: {custom_ids}"
