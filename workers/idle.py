"""How long a worker loop with nothing to do sleeps."""

from __future__ import annotations

from sqlalchemy import TextClause

from store.db import Database
from store.errors import OrdoError

__all__ = ["seconds_until_due"]


def seconds_until_due(db: Database, next_due_at: TextClause, poll_s: float) -> float:
    """Until the earliest due time `next_due_at` returns (columns next_at, db_now), at most poll_s.
    Measured on the database clock so worker clock skew cannot shorten or stretch the sleep; poll_s
    when nothing is due or the database cannot be asked (the loop's next pass reports that)."""
    try:
        with db.tx() as conn:
            row = conn.execute(next_due_at).one()
    except OrdoError:
        return poll_s
    if row.next_at is None:
        return poll_s
    return min(poll_s, max(0.001, (row.next_at - row.db_now).total_seconds()))
