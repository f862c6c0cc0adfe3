"""Named SQL statements, one file per concern.

A file holds statements under headers `-- name --`; comments below a header say what the statement
is for and which lock or index it relies on. Statements are loaded once and called by name.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import psycopg
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import TextClause, text

__all__ = ["BinaryArray", "load_queries"]

_HEADER = re.compile(r"^-- ([a-z][a-z0-9_]*) --\s*$", re.MULTILINE)


@cache
def load_queries(package: str, filename: str) -> dict[str, TextClause]:
    source = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(source)
    queries: dict[str, TextClause] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{package}/{filename}: statement {name!r} is defined twice")
        statement = body.strip().rstrip(";").strip()
        if not statement:
            raise ValueError(f"{package}/{filename}: statement {name!r} is empty")
        queries[name] = text(statement)
    return queries


class BinaryArray(list):  # type: ignore[type-arg]
    """A list sent as an array parameter in PostgreSQL's binary format. psycopg sends plain lists as
    text, quoting and escaping each element in Python (about 4 us an element); a tick writing 150,000
    occurrences sends arrays of a few hundred thousand uuids and timestamps."""


psycopg.adapters.register_dumper(BinaryArray, ListBinaryDumper)
