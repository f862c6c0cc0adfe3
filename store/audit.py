"""The audit log: every write made through the API, recorded in the transaction that makes it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Connection, CursorResult, TextClause, text

from store import keyset
from store.domain import iso_utc
from store.keyset import Page
from store.sql import load_queries

if TYPE_CHECKING:  # store.agents imports store.tasks, which writes entries through this module
    from store.agents import Principal

__all__ = ["Entry", "audited", "insert", "list_page", "public", "record"]

Q = load_queries("store", "audit.sql")


@dataclass(frozen=True)
class Entry:
    """What an entry says besides its target: who, `action` as `<resource>.<verb>` (task.create,
    run.cancel, token.revoke...), the kind of target, and details (JSON)."""

    who: Principal
    action: str
    target_type: str
    details: Mapping[str, Any] | None = None

    def params(self) -> dict[str, Any]:
        return {
            "audit_agent_id": self.who.agent_id,
            "audit_token_id": self.who.token_id,
            "audit_action": self.action,
            "audit_target_type": self.target_type,
            "audit_details": json.dumps(dict(self.details or {}), default=str),
        }


def record(
    conn: Connection,
    who: Principal,
    action: str,
    target_type: str,
    target_id: Any,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry, as a statement of its own (for a target the caller already knows)."""
    params = Entry(who, action, target_type, details).params()
    return conn.execute(Q["record"], {**params, "audit_target_id": str(target_id)}).scalar_one()


def insert(
    conn: Connection, statement: TextClause, params: Mapping[str, Any], entry: Entry | None
) -> CursorResult[Any]:
    """Run `statement`, which creates rows (see `audited`); with an `entry`, the same statement also
    writes that entry for each row it creates (the row's id as the target)."""
    if entry is None:
        return conn.execute(statement, params)
    return conn.execute(audited(statement), {**params, **entry.params()})


# What `audited` composes: a WITH ending with `SELECT * FROM created`, or a bare `INSERT ... RETURNING *`.
_TAIL = "SELECT * FROM created"
_BARE_INSERT = re.compile(r"^\s*INSERT\b", re.IGNORECASE)
_LEADING_COMMENTS = re.compile(r"\A(\s*--[^\n]*\n)*\s*")


@cache
def audited(statement: TextClause) -> TextClause:
    """`statement` with record_created joined to it as one more CTE, so that the entry of a created
    row is written by the statement that creates it: an insert and its entry in one round trip. The
    statement is either an `INSERT ... RETURNING *`, or a WITH that names the created rows `created`
    and ends with `SELECT * FROM created` (data-modifying CTEs cannot nest, so the entry's CTE is
    added beside the statement's own, not around it)."""
    sql = _LEADING_COMMENTS.sub("", statement.text)
    entry = _LEADING_COMMENTS.sub("", Q["record_created"].text)
    if _BARE_INSERT.match(sql):
        return text(f"WITH created AS (\n{sql}),\naudited AS (\n{entry})\n{_TAIL}")
    head, tail, rest = sql.rpartition(_TAIL)
    if not (tail and head.lstrip().upper().startswith("WITH") and not rest.strip()):
        raise ValueError(f"cannot audit a statement not shaped as `WITH created AS (...) ... {_TAIL}`: {sql}")
    return text(f"{head.rstrip()},\naudited AS (\n{entry})\n{_TAIL}")


def list_page(
    conn: Connection,
    *,
    agent_id: UUID | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    (before_id,) = keyset.decode(cursor, int) if cursor else (None,)
    rows = (
        conn.execute(
            Q["list_audit"],
            {
                "agent_id": agent_id,
                "target_type": target_type,
                "target_id": target_id,
                "action": action,
                "before_id": before_id,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    page = keyset.page(rows, limit, lambda r: (r["id"],))
    return Page([public(r) for r in page.items], page.next_cursor)


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso_utc(row["at"]),
        "agent_id": str(row["agent_id"]),
        "token_id": str(row["token_id"]) if row["token_id"] else None,
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "details": row["details"],
    }
