"""Task files: YAML or JSON, and never an alias bomb (cli.documents)."""

from pathlib import Path

import pytest

from cli import documents
from store.errors import InvalidInput

CAP = 1024 * 1024


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    return str(path)


def _bomb(levels: int, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """Nine levels of nine aliases would be 387 million strings: refused at once, by alias count."""
    with pytest.raises(InvalidInput) as error:
        documents.read(_write(tmp_path, _bomb(9)), max_bytes=CAP)
    assert error.value.code == "DOCUMENT_TOO_LARGE" and "aliases" in error.value.message


def test_few_aliases_that_expand_past_the_cap_are_refused(tmp_path: Path) -> None:
    """Within the alias count, six levels of nine still expand to 4 MB: refused by size, unexpanded."""
    with pytest.raises(InvalidInput) as error:
        documents.read(_write(tmp_path, _bomb(6, width=9)[:None]), max_bytes=CAP)
    assert error.value.code == "DOCUMENT_TOO_LARGE"


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        documents.read(_write(tmp_path, "a: &a [1, *a]\n"), max_bytes=CAP)


def test_a_list_of_tasks_is_checked_document_by_document(tmp_path: Path) -> None:
    """Each document of a list must fit the cap on its own; the file may be larger."""
    big = "x" * 600
    text = "\n".join(f"- {{title: t{i}, description: {big}}}" for i in range(3))
    docs, listed = documents.read_many(_write(tmp_path, text), max_bytes=1000)
    assert listed and len(docs) == 3
    with pytest.raises(InvalidInput) as error:
        documents.read_many(_write(tmp_path, f"- {{description: {'y' * 2000}}}\n"), max_bytes=1000)
    assert "document 1" in error.value.message


def test_sharing_a_block_a_few_times_is_fine_and_timestamps_stay_text(tmp_path: Path) -> None:
    text = (
        "defaults: &d {timeout_s: 30}\n"
        "steps: [{<<: *d, id: a}, {<<: *d, id: b}]\n"
        "schedule_expr: 2026-05-01T10:00:00+03:00\n"
    )
    doc = documents.read(_write(tmp_path, text), max_bytes=CAP)
    assert doc["steps"][1] == {"timeout_s": 30, "id": "b"}
    assert doc["schedule_expr"] == "2026-05-01T10:00:00+03:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [("title: [unclosed\n", "not valid YAML or JSON at line"), ("[]\n", "empty list")],
)
def test_unreadable_documents_say_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        documents.read_many(_write(tmp_path, text), max_bytes=CAP)
    assert message in error.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as error:
        documents.read(str(tmp_path / "nope.yaml"), max_bytes=CAP)
    assert error.value.message.startswith(f"cannot read {tmp_path / 'nope.yaml'}")
