"""Named SQL statements, one file per concern.

A file holds statements under headers `-- name --`; comments below a header say what the statement
is for and which lock or index it relies on. Statements are loaded once and called by name.

Most are run through SQLAlchemy (`conn.execute(Q[name], params)`). The API's hottest reads run the
same statement on a plain psycopg async connection (`fetch_one`, `fetch_all`): SQLAlchemy's async
layer (a greenlet hop per await, its pool, its result metadata) costs about twice the read itself
there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncRawCursor
from psycopg.rows import dict_row
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import psycopg as _psycopg_dialect

__all__ = ["BinaryArray", "fetch_all", "fetch_one", "load_queries"]

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


_NUMBERED = _psycopg_dialect.dialect(paramstyle="numeric_dollar")


@cache
def _numbered(query: TextClause) -> tuple[str, tuple[str, ...]]:
    """The statement with PostgreSQL's own placeholders (`:name` becomes `$n`, the same n wherever the
    name recurs) and the parameter name of each n, rendered once by SQLAlchemy so that both paths run
    the very same SQL. psycopg sends such a statement as it is; with `%(name)s` it would parse the
    text on every execution (it caches that only for statements under 4 KB, and GET /runs's is
    longer)."""
    compiled = query.compile(dialect=_NUMBERED)
    return str(compiled), tuple(compiled.positiontup or ())


async def _execute(
    conn: AsyncConnection[Any], query: TextClause, params: Mapping[str, Any], prepare: bool | None = None
) -> AsyncRawCursor[dict[str, Any]]:
    statement, names = _numbered(query)
    cursor = AsyncRawCursor(conn, row_factory=dict_row)
    await cursor.execute(statement, [params[name] for name in names], prepare=prepare)
    return cursor


async def fetch_one(
    conn: AsyncConnection[Any], query: TextClause, params: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The first row of `query` as a dict (None: no row), as `.mappings().one_or_none()` would give it."""
    return await (await _execute(conn, query, params)).fetchone()


async def fetch_all(
    conn: AsyncConnection[Any], query: TextClause, params: Mapping[str, Any], *, prepare: bool | None = None
) -> list[dict[str, Any]]:
    """Every row of `query` as a dict, as `.mappings().all()` would give them. `prepare=False`: planned
    for these parameters on each execution, never with the plan the server keeps for a prepared
    statement (psycopg prepares a statement from its fifth execution on a connection)."""
    return await (await _execute(conn, query, params, prepare)).fetchall()
