"""The layers keep their direction (cogs -> bot -> comfy), read from the imports with ast."""

from __future__ import annotations

import ast
import importlib
import re
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


def _module_name(path: Path) -> str:
    """`cogs._words.status` for cogs/_words/status.py, `cogs._words` for its __init__.py."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
    return [p for p in sorted((ROOT / "cogs").glob("*.py")) if not p.name.startswith("_")]


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

_COGS_MODULES = {_module_name(path) for path in _modules("cogs")}


def _cogs_imported_by(path: Path) -> set[str]:
    """The cogs/ modules a cogs/ module imports (at run time or for type checking alike), by dotted name.

    `from cogs._words import status` names the module cogs._words.status; `from cogs._words.status import x`
    names cogs._words.status. A package stands for its __init__.py.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cogs."))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from . import x, from ._y import z
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            if module != "cogs" and not module.startswith("cogs."):
                continue
            submodules = {f"{module}.{alias.name}" for alias in node.names} & _COGS_MODULES
            found.update(submodules or {module})
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


def test_the_import_reader_names_modules_of_packages_and_relative_imports() -> None:
    status = ROOT / "cogs" / "_words" / "status.py"
    assert _module_name(status) == "cogs._words.status"
    assert _module_name(ROOT / "cogs" / "_words" / "__init__.py") == "cogs._words"
    assert "cogs._words.status" in _cogs_imported_by(ROOT / "cogs" / "_tracker.py")


def test_cogs_modules_import_each_other_without_a_cycle() -> None:
    graph = {_module_name(path): _cogs_imported_by(path) for path in _modules("cogs")}
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
    assert not marked, f"{path.name} writes Discord markup (the words belong in cogs/_words/): {marked}"


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


def test_the_custom_id_parts_of_the_panels_are_written_once() -> None:
    from cogs._admin_views import PageMove
    from cogs._settings_views import PanelButton, PanelSelect

    parts = {member.value for enum in (PageMove, PanelSelect, PanelButton) for member in enum}
    for path in (ROOT / "cogs" / "_admin_views.py", ROOT / "cogs" / "_settings_views.py"):
        strings = [text for _, text in _strings_outside_docstrings_and_logs(path)]
        twice = {
            part
            for part in parts
            if sum(1 for text in strings if re.search(rf"(?<!\w){part}(?!\w)", text)) > 1
        }
        assert not twice, f"{path.name} writes {sorted(twice)} again; use its enum member"


# ------------------------------------------------------------------------------------------ one home for the words

WORDS = ROOT / "cogs" / "_words"
_LETTERS = r"[^\W\d_]{2,}"
_WORD = re.compile(_LETTERS)
_PROSE = re.compile(rf"{_LETTERS}\s|\s{_LETTERS}")
# Where Discord shows a string to members: these keywords of any call, ...
_SHOWN_KEYWORDS = frozenset({"content", "label", "description", "title", "placeholder", "text"})
# ... these keywords of these calls, ...
_SHOWN_KEYWORDS_OF = {
    "add_field": {"name", "value"},
    "set_author": {"name"},
    "Choice": {"name"},
    "command": {"name", "description"},
}
# ... and every argument of these.
_SHOWN_ARGUMENTS_OF = frozenset(
    {"send", "send_message", "send_ephemeral", "edit_message", "Embed", "set_footer", "describe"}
)
# Exceptions whose message members read (a check's refusal is shown as it is); any other one is for the log.
_SHOWN_EXCEPTIONS = frozenset({"CheckFailure"})
# Helpers whose text goes only to the log: which interaction an error came from.
LOG_ONLY_HELPERS = {ROOT / "cogs" / "_errors.py": frozenset({"_describe"})}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's literal parts, joined by `{}` where its values go."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _member_words(source: str, log_only: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """The string literals of `source` that are words members read (the rule is the docstring of
    test_cogs_write_no_words_of_their_own_they_take_them_from_cogs_words), by line."""
    tree = ast.parse(source)
    skipped: set[int] = set()
    shown: set[int] = set()

    def skip(node: ast.AST) -> None:
        skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip(node)  # a docstring
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(n) for value in node.values for n in ast.walk(value))  # read as a whole
        elif isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc if isinstance(node.exc, ast.Call) else None
            if raised is None or _call_name(raised) not in _SHOWN_EXCEPTIONS:
                skip(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in log_only:
            skip(node)
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id in {"log", "logging"}:
                    skip(node)
                    continue
            keywords = _SHOWN_KEYWORDS | _SHOWN_KEYWORDS_OF.get(name, set())
            arguments = [*node.args, *(k.value for k in node.keywords)] if name in _SHOWN_ARGUMENTS_OF else []
            arguments += [k.value for k in node.keywords if k.arg in keywords]
            shown.update(id(n) for argument in arguments for n in ast.walk(argument))
    found = []
    for node in ast.walk(tree):
        text = _literal(node)
        if text is None or id(node) in skipped:
            continue
        marked = any(mark in text for mark in DISCORD_MARKUP)
        if marked or _PROSE.search(text) or (id(node) in shown and _WORD.search(text)):
            found.append((getattr(node, "lineno", 0), text))
    return sorted(found)


def test_the_word_finder_finds_words_and_leaves_identifiers_and_log_lines() -> None:
    source = """
'''A docstring, never words.'''
log.info("the bot says %s", f"job {job.id}")
button = Button(label="Reset", custom_id=f"settings:{user}:reset", emoji="ℹ️")
line = f"⏳ Queued, position {n}"
embed.add_field(name="Model", value=model)
channel.send(f"<@{user}>", ephemeral=True)
task = create_task(run(), name="imagine-presenter")
name = "preview.png" if data.get("custom_id") == "x" else "imagine_12_grid.png"
option = Choice(name=f"{shape} {width}:{height}", value="2:3")
raise ValueError(f"custom_id {value!r} is too long")
raise CheckFailure("You can't use this here")
def _describe(interaction):
    return f"{what} by user {interaction.user.id}"
"""
    assert _member_words(source, frozenset({"_describe"})) == [
        (4, "Reset"),
        (5, "⏳ Queued, position {}"),
        (6, "Model"),
        (7, "<@{}>"),
        (12, "You can't use this here"),
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("cogs") if WORDS not in p.parents],
    ids=lambda p: str(p.relative_to(ROOT / "cogs")),
)
def test_cogs_write_no_words_of_their_own_they_take_them_from_cogs_words(path: Path) -> None:
    """Every word a member reads is written in cogs/_words/; the other modules of cogs/ only show them.

    A string literal in cogs/ outside cogs/_words/ (an f-string is read as its literal parts, `{}` where
    its values go) is words members read when it
    - holds Discord markup (`**`, a backtick, `<@`, `<#`, a link to a message), or
    - reads as prose: a word of two letters or more next to a space (`⏳ Queued`, `Step {}/{}`), or
    - holds a word where Discord shows text to members: the `content`, `label`, `description`, `title`,
      `placeholder` and `text` of any call, the `name` and `value` of `add_field`, the `name` of
      `set_author` and of a command's `Choice`, the `name` and `description` of an app command, and every
      argument of `send`, `send_message`, `send_ephemeral`, `edit_message`, `Embed`, `set_footer` and
      `describe` (an option's description).
    Not words: docstrings, the arguments of `log.*` calls, the message of a raised exception (for the log;
    but a `CheckFailure`'s is shown, so it counts), the helpers in LOG_ONLY_HELPERS, and single tokens such
    as custom_id parts and templates, dict keys, file names, MIME types, task and event names. Emoji alone
    (🟢, ◀️) are not words either: they carry no letters.
    """
    source = path.read_text(encoding="utf-8")
    words = _member_words(source, LOG_ONLY_HELPERS.get(path, frozenset()))
    assert not words, f"{path.relative_to(ROOT)} writes words members read; put them in cogs/_words/: {words}"


@pytest.mark.parametrize("path", sorted(WORDS.glob("*.py")), ids=lambda p: p.name)
def test_the_words_import_no_cogs_module_outside_their_package_and_build_no_discord_objects(
    path: Path,
) -> None:
    """cogs/_words/ is the bottom of cogs/: the modules that show words import it, never the reverse. It
    takes facts from bot/ and comfy/, and from discord only `discord.utils` (escaping): embeds, views and
    modals are built by the modules that use the words."""
    outside = sorted(
        m for m in _cogs_imported_by(path) if m != "cogs._words" and not m.startswith("cogs._words.")
    )
    assert not outside, f"{path.name} imports {outside}; the words may import only cogs._words modules"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "discord"
    }
    imported = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "discord"
        for alias in node.names
    }
    assert used <= {"utils"} and imported <= {"discord.utils"}, f"{path.name} uses discord.{used | imported}"


# ------------------------------------------------------------------------------------------ small files

MAX_LINES = 500
# Modules over the limit, each still to be split by role. The list only shrinks: the test fails when one of
# them is under the limit, so it comes off the list.
NOT_SPLIT_YET: frozenset[Path] = frozenset()


def test_no_module_of_bot_cogs_or_comfy_is_over_500_lines() -> None:
    lines = {
        path: len(path.read_text(encoding="utf-8").splitlines())
        for package in ("bot", "cogs", "comfy")
        for path in _modules(package)
    }
    long = sorted(str(path.relative_to(ROOT)) for path, n in lines.items() if n > MAX_LINES)
    assert long == sorted(str(path.relative_to(ROOT)) for path in NOT_SPLIT_YET), (
        f"over {MAX_LINES} lines: {long}; split a long module by role (NOT_SPLIT_YET lists the ones still to"
        " split: take a module off once it is short)"
    )
