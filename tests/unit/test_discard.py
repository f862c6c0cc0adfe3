"""store.db.discard: a loop's failed connection is thrown away whatever state it is in, and a failure
to close it is logged, never raised (the loop must go on to open a fresh one)."""

from __future__ import annotations

from typing import Any

from store.db import discard


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def debug(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


class _Connection:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.calls: list[str] = []

    def invalidate(self) -> None:
        self.calls.append("invalidate")
        if self.fails:
            raise OSError("server closed the connection")

    def close(self) -> None:
        self.calls.append("close")


def test_a_connection_is_invalidated_then_closed() -> None:
    conn, log = _Connection(fails=False), _Log()
    discard(conn, log)  # type: ignore[arg-type]
    assert conn.calls == ["invalidate", "close"] and log.lines == []


def test_a_connection_that_fails_to_close_is_logged_not_raised() -> None:
    conn, log = _Connection(fails=True), _Log()
    discard(conn, log)  # type: ignore[arg-type]
    assert log.lines == [("connection_discard_failed", {"error": "server closed the connection"})]
