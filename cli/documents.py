"""Reading YAML and JSON documents from files or stdin, safely.

YAML aliases let a small file describe a huge document (nine levels of nine aliases to a list of
nine make 387 million strings): PyYAML builds the aliased objects once and shares them, but whatever
serialises the document (to store it, to send it) expands every reference. So a document is refused
when it uses more than MAX_ALIASES aliases, or when its expanded form would be larger than the limit
its caller gives (for tasks: the API's body cap, ORDO_API_MAX_BODY_BYTES) - checked on the shared
objects with a budget, before anything is expanded. Timestamps stay text, as in JSON.

A file of many documents (a YAML stream of `---`-separated documents, or a list) may hold up to
MAX_DOCUMENTS of them. A file that is JSON is read by the json module: the same values (JSON is YAML),
many times faster than the YAML parser, which matters for a file of 100,000 tasks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from store.errors import InvalidInput

__all__ = ["MAX_ALIASES", "MAX_DOCUMENTS", "read", "read_many"]

# A hand-written file shares a handful of blocks; a bomb needs many references.
MAX_ALIASES = 100
# Task documents in one file (a YAML stream or a YAML or JSON list of them): `ordo task add` stores
# them in one transaction.
MAX_DOCUMENTS = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts aliases and leaves timestamps as the text they were written as."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                event = self.peek_event()
                raise InvalidInput(
                    f"more than {MAX_ALIASES} YAML aliases (line {event.start_mark.line + 1}); "
                    "write the repeated parts out, or use JSON",
                    details={"limit": MAX_ALIASES},
                    code="DOCUMENT_TOO_LARGE",
                )
        return super().compose_node(parent, index)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


def read(path: str, *, max_bytes: int) -> Any:
    """One document from a file ('-': stdin): YAML or JSON, its expanded JSON at most `max_bytes`."""
    (value,), shared = _load(path, many=False)
    _check_size(value, max_bytes, path, shared=shared)
    return value


def read_many(path: str, *, max_bytes: int) -> tuple[list[Any], bool]:
    """Documents from a file that holds one, a list of them, or a YAML stream of several (each within
    `max_bytes` expanded); and whether the file held more than one document or a list."""
    values, shared = _load(path, many=True)
    if len(values) == 1:
        value = values[0]
        docs, listed = (value, True) if isinstance(value, list) else ([value], False)
    else:
        docs, listed = values, True
    if not docs:
        raise InvalidInput(f"{path} holds an empty list: no documents", details={"path": path})
    if len(docs) > MAX_DOCUMENTS:
        raise InvalidInput(
            f"{path} holds {len(docs)} documents; at most {MAX_DOCUMENTS} in one file",
            details={"path": path, "limit": MAX_DOCUMENTS},
            code="DOCUMENT_TOO_LARGE",
        )
    for i, doc in enumerate(docs):
        _check_size(doc, max_bytes, f"{path}: document {i + 1}" if listed else path, shared=shared)
    return docs, listed


def _load(path: str, *, many: bool) -> tuple[list[Any], bool]:
    """The file's documents (exactly one unless `many`: a YAML stream may hold several), and whether
    YAML aliases made them share parts."""
    try:
        source = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}", details={"path": path}) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text", details={"path": path}) from None
    if source.lstrip()[:1] in ("{", "["):
        try:
            return [json.loads(source, parse_constant=_not_json)], False
        except ValueError:
            pass  # not JSON after all: the YAML parser reads it, or says where it is wrong
    loader = _Loader(source)
    try:
        if not many:
            docs = [loader.get_single_data()]
        else:
            docs = []
            while loader.check_data():
                docs.append(loader.get_data())
        return docs or [None], loader.aliases > 0
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInput(
            f"{path} is not valid YAML or JSON{where}: {problem}", details={"path": path}
        ) from None
    except RecursionError:
        raise InvalidInput(f"{path} is nested too deeply", details={"path": path}) from None
    finally:
        loader.dispose()


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _check_size(value: Any, max_bytes: int, where: str, *, shared: bool) -> None:
    """Refuse `value` if its JSON form exceeds `max_bytes`. With `shared` (aliased) parts, without
    building that form first: they are walked each time they are referenced, within a budget of
    `max_bytes`. Without, the form is about as large as the text it was read from: built and measured."""
    budget = max_bytes
    stack = [value] if shared else []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            budget -= 2 + 2 * len(item)
            for key, child in item.items():
                budget -= len(str(key)) + 2
                stack.append(child)
        elif isinstance(item, list):
            budget -= 2 + len(item)
            stack.extend(item)
        else:
            budget -= len(item) + 2 if isinstance(item, str) else 8
        if budget < 0:
            raise InvalidInput(
                f"{where} is larger than {max_bytes} bytes as JSON (the API's body limit, "
                "ORDO_API_MAX_BODY_BYTES); split it, or check its YAML aliases",
                details={"limit_bytes": max_bytes},
                code="DOCUMENT_TOO_LARGE",
            )
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode())
    if size > max_bytes:
        raise InvalidInput(
            f"{where} is {size} bytes as JSON; the API's body limit (ORDO_API_MAX_BODY_BYTES) is {max_bytes}",
            details={"limit_bytes": max_bytes, "bytes": size},
            code="DOCUMENT_TOO_LARGE",
        )
