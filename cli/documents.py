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

from engine.values import unstorable
from store.errors import InvalidInput

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "check_storable",
    "loads",
    "loads_json",
    "read",
    "read_many",
]

# A hand-written file shares a handful of blocks; a bomb needs many references.
MAX_ALIASES = 100
# Task documents in one file (a YAML stream or a YAML or JSON list of them): `ordo task add` stores
# them in one transaction.
MAX_DOCUMENTS = 100_000
# Nesting the API accepts in a JSON body (api.schemas.MAX_JSON_DEPTH): the CLI refuses the same.
MAX_DEPTH = 64


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

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A key written twice in one mapping is refused (PyYAML would keep the last silently)."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.construct_object(key_node)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {key!r} is written twice", key_node.start_mark
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


def read(path: str, *, max_bytes: int) -> Any:
    """One document from a file ('-': stdin): YAML or JSON, its expanded JSON at most `max_bytes`."""
    (value,), shared = _load(path, many=False)
    _check_size(value, max_bytes, path, shared=shared)
    check_storable(value, path)
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
        where = f"{path}: document {i + 1}" if listed else path
        _check_size(doc, max_bytes, where, shared=shared)
        check_storable(doc, where)
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
    return _parse(source, path, many=many)


def loads(source: str, path: str, *, max_bytes: int) -> Any:
    """`read` for text already read from `path`."""
    (value,), shared = _parse(source, path, many=False)
    _check_size(value, max_bytes, path, shared=shared)
    check_storable(value, path)
    return value


def _parse(source: str, path: str, *, many: bool) -> tuple[list[Any], bool]:
    if source.lstrip()[:1] in ("{", "["):
        try:
            return [json.loads(source, parse_constant=_not_json, object_pairs_hook=_unique)], False
        except _NotJsonNumber as e:  # JSON with NaN or Infinity: not YAML's string "NaN" either
            raise InvalidInput(f"{path}: {e}", details={"path": path}) from None
        except RecursionError:
            raise InvalidInput(f"{path} is nested too deeply", details={"path": path}) from None
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


class _NotJsonNumber(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; one with a key written twice is left to the YAML parser, which names it."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _not_json(constant: str) -> Any:
    raise _NotJsonNumber(f"{constant} is not a JSON number")


def loads_json(text: str, what: str) -> Any:
    """A JSON value given on the command line (`what` names it), checked as `check_storable` does."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise InvalidInput(f"{what} is nested too deeply", details={"path": what}) from None
    except ValueError as e:
        raise InvalidInput(f"{what} is not valid JSON: {e}", details={"path": what}) from None
    check_storable(value, what)
    return value


def check_storable(value: Any, where: str) -> None:
    """Refuse what the API refuses in a body (engine.values.unstorable, at MAX_DEPTH levels). Run after
    `_check_size`, so a document that shares parts is known to be small."""
    if found := unstorable(value, MAX_DEPTH):
        path, problem = found
        raise InvalidInput(f"{where}: {path or 'value'}: {problem}", details={"path": path})


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
    # surrogatepass: a lone surrogate is measured here and refused, with its path, by check_storable.
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidInput(
            f"{where} is {size} bytes as JSON; the API's body limit (ORDO_API_MAX_BODY_BYTES) is {max_bytes}",
            details={"limit_bytes": max_bytes, "bytes": size},
            code="DOCUMENT_TOO_LARGE",
        )
