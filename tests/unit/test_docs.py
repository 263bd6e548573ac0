"""The README and docs/ stay true: the rules examples parse (and the invalid one fails as shown), the
`make` targets and `python -m ciflow` / `python -m devstack` commands they mention exist with the
options they show, every setting is documented, and every relative link resolves."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

from ciflow.cli import build_parser
from ciflow.errors import ConfigError
from ciflow.rules import parse_rules
from ciflow.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
INVALID_MARK = "<!-- rules-example: invalid -->"
README_MAX_LINES = 200


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line of the opening fence) for every fenced code block."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((m.group(1), "\n".join(body), start + 1))
        i += 1
    return out


def code_snippets(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks: where commands are written."""
    blocks = fenced_blocks(text)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return spans + [line for _, body, _ in blocks for line in body.splitlines()]


# --- the README and the pages ---------------------------------------------------------------------

def test_the_readme_is_short_and_links_every_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for page in ("rules", "deploy", "operating", "local-stack", "reliability", "performance"):
        assert (DOCS / f"{page}.md").exists(), f"docs/{page}.md is missing"
    for page in sorted(DOCS.glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README does not link docs/{page.name}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{_rel(page)}: " + "; ".join(broken)


# --- rules examples -------------------------------------------------------------------------------

def rules_examples() -> list[tuple[str, int, bool, str]]:
    """(JSON, line, valid?, the error shown after it) for every json block of docs/rules.md."""
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    blocks = fenced_blocks(text)
    lines = text.splitlines()
    out = []
    for i, (lang, body, line) in enumerate(blocks):
        if lang != "json":
            continue
        before = [x for x in lines[: line - 1] if x.strip()]
        invalid = bool(before) and before[-1].strip() == INVALID_MARK
        shown = blocks[i + 1][1] if invalid and i + 1 < len(blocks) else ""
        out.append((body, line, not invalid, shown))
    return out


def test_rules_md_has_examples() -> None:
    examples = rules_examples()
    assert sum(valid for _, _, valid, _ in examples) >= 3
    assert any(not valid for _, _, valid, _ in examples)


@pytest.mark.parametrize("example", rules_examples(), ids=lambda e: f"line{e[1]}")
def test_rules_examples_are_what_the_functions_accept(example: tuple[str, int, bool, str]) -> None:
    body, line, valid, shown = example
    if valid:
        rules = parse_rules(body, f"docs/rules.md:{line}")
        assert rules.rules
    else:
        with pytest.raises(ConfigError) as err:
            parse_rules(body, "rules.json")
        assert str(err.value) == shown.strip(), "the error shown in docs/rules.md is not what parse_rules says"


def test_the_bundled_and_demo_rules_parse() -> None:
    for path in (ROOT / "layers/ciflow/ciflow/default_rules.json", ROOT / "devstack/demo_rules.json"):
        assert parse_rules(path.read_text(encoding="utf-8"), str(path)).rules


def test_every_setting_is_documented() -> None:
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(CIFLOW_[A-Z0-9_]+)` \|", text, flags=re.M))
    assert documented == set(ENV_VARS), (f"missing: {sorted(set(ENV_VARS) - documented)}; "
                                         f"unknown: {sorted(documented - set(ENV_VARS))}")


# --- make targets ---------------------------------------------------------------------------------

def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {t for line in re.findall(r"^([A-Za-z0-9_. -]+):(?!=)", text, flags=re.M) for t in line.split()}


def mentioned_make_targets(page: Path) -> set[str]:
    found = set()
    for snippet in code_snippets(page.read_text(encoding="utf-8")):
        for m in re.finditer(r"(?:^|[\s;&|(])make ((?:[a-z][a-z0-9-]*\s*)+)", snippet):
            for word in m.group(1).split():
                found.add(word)
    return found


# Targets a page already names while the work that adds them is under way: (page, target) → what adds
# it. Each entry is a known untruth in the docs; it comes off as soon as the target exists.
NOT_YET: dict[tuple[str, str], str] = {
}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_make_targets_mentioned_exist(page: Path) -> None:
    expected_missing = {target for (where, target) in NOT_YET if where == _rel(page)}
    missing = mentioned_make_targets(page) - makefile_targets() - expected_missing
    assert not missing, f"{_rel(page)} mentions make targets the Makefile lacks: {sorted(missing)}"


def test_the_not_yet_list_is_honest() -> None:
    for (where, target), what in NOT_YET.items():
        assert target in mentioned_make_targets(ROOT / where), f"{where} no longer names make {target}: remove it"
        assert target not in makefile_targets(), f"make {target} exists now ({what}): remove it from NOT_YET"


def test_make_target_check_finds_a_missing_target(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("Run `make demo` and then:\n\n```sh\nmake nonesuch   # comment\n```\n")
    assert mentioned_make_targets(page) == {"demo", "nonesuch"}
    assert "nonesuch" not in makefile_targets() and "demo" in makefile_targets()


# --- python -m ciflow / python -m devstack --------------------------------------------------------

def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@lru_cache(maxsize=1)
def devstack_commands() -> dict[str, set[str]]:
    """`python -m devstack` subcommands and their options, read from their --help."""
    from devstack.__main__ import main

    out = {}
    for cmd in ("serve", "demo", "chaos"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
            main([cmd, "--help"])
        out[cmd] = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", buf.getvalue()))
    return out


def command_lines(page: Path, module: str) -> list[list[str]]:
    """The argument words after `python -m <module>` (or `make ciflow ARGS="…"`) in a page."""
    out = []
    for snippet in code_snippets(page.read_text(encoding="utf-8")):
        for m in re.finditer(rf"-m {module}(?:\s+(.*))?$", snippet):
            rest = re.split(r"\s(?:#|\||&&|;)\s?|`", m.group(1) or "")[0]
            out.append(rest.split())
        if module == "ciflow":
            for m in re.finditer(r'make ciflow ARGS="([^"]*)"', snippet):
                out.append(m.group(1).split())
    return [words for words in out if words and words[0] not in ("…", "...")]   # `ARGS="…"`: a placeholder


def _flags(words: list[str]) -> list[str]:
    return [w.strip("[]").split("=")[0] for w in words if w.strip("[]").startswith("-")]


def ciflow_table_rows() -> list[list[str]]:
    """The commands in the first column of docs/operating.md's command table."""
    text = (DOCS / "operating.md").read_text(encoding="utf-8")
    return [shlex.split(m.replace("\\|", "|"), posix=False)
            for m in re.findall(r"^\| `([a-z][a-z-]*(?: [^`]*)?)` \|", text, flags=re.M)]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_ciflow_commands_mentioned_exist(page: Path) -> None:
    commands = _subcommands(build_parser())
    lines = command_lines(page, "ciflow")
    if page.name == "operating.md":
        rows = ciflow_table_rows()
        assert {r[0] for r in rows} == set(commands), "the command table lists every command, no other"
        lines += rows
    for words in lines:
        assert words[0] in commands, f"{_rel(page)}: python -m ciflow has no command {words[0]!r}"
        unknown = set(_flags(words[1:])) - _options(commands[words[0]])
        assert not unknown, f"{_rel(page)}: `{words[0]}` has no option {sorted(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_devstack_commands_mentioned_exist(page: Path) -> None:
    lines = command_lines(page, "devstack")
    if page.name == "local-stack.md":
        text = page.read_text(encoding="utf-8")
        switches = re.findall(r"^\| `(--[a-z0-9-]+)[^`]*` \|", text, flags=re.M)
        assert len(switches) >= 5
        lines.append(["serve", *switches])
    if not lines:
        return
    commands = devstack_commands()
    for words in lines:
        assert words[0] in commands, f"{_rel(page)}: python -m devstack has no command {words[0]!r}"
        unknown = set(_flags(words[1:])) - commands[words[0]]
        assert not unknown, f"{_rel(page)}: `devstack {words[0]}` has no option {sorted(unknown)}"


def test_the_command_check_finds_a_wrong_option(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text('`python -m ciflow status --prefix a/ --no-such-flag` and `make ciflow ARGS="explain k"`\n')
    lines = command_lines(page, "ciflow")
    assert lines == [["status", "--prefix", "a/", "--no-such-flag"], ["explain", "k"]]
    status = _subcommands(build_parser())["status"]
    assert set(_flags(lines[0][1:])) - _options(status) == {"--no-such-flag"}
