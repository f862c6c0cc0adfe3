"""store.db.HeldConnection, the connection a worker's loops keep between passes: the same one while
it works; after its server process dies and the loop discards it, a fresh one that works."""

from __future__ import annotations

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from store.db import Database, HeldConnection


def test_a_held_connection_is_kept_until_discarded_then_replaced(db: Database) -> None:
    held = HeldConnection(db, structlog.get_logger("test"))
    first = held.get()
    pid = first.execute(text("SELECT pg_backend_pid()")).scalar_one()
    first.rollback()
    assert held.get() is first

    with db.tx() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(DBAPIError):
        held.get().execute(text("SELECT 1"))
    held.discard()

    fresh = held.get()
    assert fresh is not first
    assert fresh.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    held.close()


def test_an_autocommit_connection_runs_each_statement_in_its_own_transaction(db: Database) -> None:
    """now() is the transaction's start: it moves between statements only outside a transaction."""
    held = HeldConnection(db, structlog.get_logger("test"), autocommit=True)
    first = held.get().execute(text("SELECT now()")).scalar_one()
    held.get().execute(text("SELECT pg_sleep(0.01)"))
    assert held.get().execute(text("SELECT now()")).scalar_one() > first
    held.close()


def test_a_pooled_connection_whose_server_process_died_is_replaced_before_a_transaction_uses_it(
    db: Database,
) -> None:
    """What pre-ping gave, without its round trip: after every pooled connection's server process is
    ended (as a database restart ends them), the next transactions run on fresh connections."""
    with db.tx() as a, db.tx() as b:
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b)}
    with db.raw_connect() as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    for _ in range(3):
        with db.tx() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() not in pids


def test_a_live_pooled_connection_is_used_without_a_ping(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a live connection out sends nothing: only one with something to read is pinged."""
    with db.tx() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    pings: list[object] = []
    ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(c) or ping(c))
    with db.tx() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
    assert pings == []
