"""Checks on the JSON values a run passes around (rendered inputs, tool outputs) before they are kept.

A value built from templates may share parts (`[${steps.a}, ${steps.a}]`), and a chain of steps that
each double the previous output grows exponentially as text while costing little memory. It may
also contain the run's own context (`${steps}`, `${@}`), which the step's output would then contain
again: a value that holds itself. Serialising either would exhaust memory or fail in the middle of
recording a batch, so every value is measured first, in time proportional to its distinct parts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import orjson

__all__ = [
    "MAX_DEPTH",
    "SelfReference",
    "TooDeep",
    "TooLarge",
    "ValueProblem",
    "escapes_nul",
    "measure",
    "text_problem",
    "unstorable",
]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_FLAT_MAX = 32

# Deeper than any document a person or a tool writes, and well inside what orjson (254 levels) and
# PostgreSQL's jsonb parser accept.
MAX_DEPTH = 100


class ValueProblem(Exception):
    """A value that cannot be kept. The message completes "the output of x.y ...", in words a task
    author understands."""


class TooLarge(ValueProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(f"is larger than {limit} bytes as JSON")
        self.limit = limit


class TooDeep(ValueProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(f"is nested more than {limit} levels deep")
        self.limit = limit


class SelfReference(ValueProblem):
    """The value contains itself (`own` False), or a container it is about to be stored in (True)."""

    def __init__(self, message: str, *, own: bool) -> None:
        super().__init__(message)
        self.own = own


def measure(
    value: Any, *, max_bytes: int, max_depth: int = MAX_DEPTH, forbidden: Collection[int] = ()
) -> int:
    """The size of `value` as compact JSON (UTF-8 bytes; close, not exact, for escapes and floats).

    Raises TooLarge as soon as the size passes `max_bytes`, TooDeep past `max_depth` levels, and
    SelfReference when the value contains itself or any container whose id() is in `forbidden`.
    A part shared several times is walked once and counted as often as it would be written.
    """
    if type(value) is dict and len(value) <= _FLAT_MAX:
        # The common case, a small object of plain values, costs one orjson call: it cannot share
        # parts, nest or contain anything. Anything orjson declines is walked below.
        for item in value.values():
            if type(item) not in _SCALARS:
                break
        else:
            try:
                size = len(orjson.dumps(value))
            except (TypeError, orjson.JSONEncodeError):
                pass  # orjson declines it (a key that is not text, a huge integer): walk it below
            else:
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                return size
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def walk(v: Any, depth: int) -> int:
        kind = type(v)
        if kind is str:
            return (len(v) if v.isascii() else len(v.encode("utf-8", "surrogatepass"))) + 2
        if kind is dict or kind is list:
            key = id(v)
            known = sizes.get(key)
            if known is not None:
                return known
            if key in forbidden:
                raise SelfReference("contains the container it would be stored in", own=True)
            if key in open_ids:
                raise SelfReference("contains itself", own=False)
            if depth >= max_depth:
                raise TooDeep(max_depth)
            open_ids.add(key)
            size = 2 + max(len(v) - 1, 0)
            if kind is dict:
                for k, item in v.items():
                    size += walk(k, depth + 1) + 1 + walk(item, depth + 1)
                    if size > max_bytes:
                        raise TooLarge(max_bytes)
            else:
                for item in v:
                    size += walk(item, depth + 1)
                    if size > max_bytes:
                        raise TooLarge(max_bytes)
            open_ids.discard(key)
            sizes[key] = size
            return size
        if v is None or v is True:
            return 4
        if v is False:
            return 5
        if kind is int:
            if not -(2**63) <= v < 2**64:
                raise ValueProblem("holds an integer outside the 64-bit range history can store")
            return len(repr(v))
        if kind is float:
            return len(repr(v))
        if isinstance(v, dict | list | tuple):  # subclasses, tuples: walk them like their JSON form
            return walk(dict(v) if isinstance(v, dict) else list(v), depth)
        return len(str(v)) + 2  # written by the serialiser's fallback (str)

    size = walk(value, 0)
    if size > max_bytes:
        raise TooLarge(max_bytes)
    return size


def escapes_nul(json_text: bytes) -> bool:
    """Whether JSON text holds the character U+0000 (escaped: an odd run of backslashes before
    `u0000`), which PostgreSQL cannot store in jsonb or text."""
    start = 0
    while (i := json_text.find(b"\\u0000", start)) >= 0:
        backslashes = 0
        j = i
        while j >= 0 and json_text[j] == 0x5C:
            backslashes += 1
            j -= 1
        if backslashes % 2 == 1:
            return True
        start = i + 1
    return False


# The integers every part of Ordo can carry (orjson writes what the worker records and sends).
_INTEGERS = (-(2**63), 2**64 - 1)


def text_problem(text: str) -> str | None:
    """Why PostgreSQL text or jsonb cannot hold `text`, or None."""
    if "\x00" in text:
        return "text cannot contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text cannot contain unpaired UTF-16 surrogates (\\ud800-\\udfff)"
    return None


def unstorable(value: Any, max_depth: int) -> tuple[str, str] | None:
    """Where and why a decoded JSON value (a request body, a document read by the CLI) cannot be
    stored and run as it is: NUL or an unpaired surrogate in a string or key, NaN or an infinity, an
    integer beyond 64 bits, more than `max_depth` levels. (path, problem), or None. Iterative: no
    recursion limit to hit."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return path or "value", f"nested deeper than {max_depth} levels"
        if isinstance(item, str):
            if problem := text_problem(item):
                return path, problem
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not _INTEGERS[0] <= item <= _INTEGERS[1]:
                return path or "value", "an integer beyond 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path or "value", f"{item} is not a JSON number"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)):
                    return (f"{path}.{key!r}" if path else repr(key)), problem
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return None
