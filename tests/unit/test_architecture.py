"""ARCHITECTURE.md names the code as it is: every path it names exists, and every name it puts in
backticks that looks like code (a statement, a function, a class, a table, a column, a setting) is
defined somewhere in Ordo's code, not only mentioned in a comment."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("api", "cli", "engine", "migrations", "observability", "scheduler", "store", "workers")
_STATEMENT = re.compile(r"^-- (\w+) --$", re.MULTILINE)
_COMMENT = re.compile(r"(--|#).*$", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _current_text() -> str:
    """The document without its notes on history (which name old statements on purpose)."""
    return (ROOT / "ARCHITECTURE.md").read_text().split("## Notes on the migrations")[0]


def _named(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def _defined_names() -> set[str]:
    names: set[str] = set()
    for package in CODE:
        for path in (ROOT / package).rglob("*"):
            if path.suffix not in (".py", ".sql"):
                continue
            source = path.read_text()
            names.update(_STATEMENT.findall(source))
            names.update(_WORD.findall(_COMMENT.sub("", source)))
    return names


def _looks_like_code(word: str) -> bool:
    return "_" in word or any(c.isupper() for c in word[1:])


def test_every_path_named_exists() -> None:
    paths = [p for p in _named(_current_text()) if re.fullmatch(r"[a-z_]+/[\w/.]*", p)]
    assert len(paths) > 40
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_every_name_that_looks_like_code_is_defined() -> None:
    defined = _defined_names()
    words = {
        word
        for named in _named(_current_text())
        if "/" not in named and " " not in named
        for word in _WORD.findall(named.split("(")[0])
        if _looks_like_code(word)
    }
    assert len(words) > 40
    assert sorted(words - defined) == []


def test_a_stale_name_is_found() -> None:
    """`finish_many` was the group commit's statement; only a comment of an old migration names it now."""
    assert "finish_many" not in _defined_names()
    assert _looks_like_code("finish_many") and not _looks_like_code("queued")
