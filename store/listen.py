"""LISTEN with reconnect: one loop for every process that waits on PostgreSQL notifications (workers
wake on new work, API processes drop cached tokens on revocation).

The loop holds its own autocommit connection, subscribes, and calls `on_notify(channel, payload)` for
each notification. When the connection is lost it calls `on_disconnect(error)` once per outage,
reconnects with backoff (0.5 s doubling to 10 s), and calls `on_connect()` again once subscribed:
anything sent while nobody listened is lost, so callers treat a (re)connect as "something may have
happened". It survives any exception, including from its callbacks, and ends only when `stop` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from store.db import Database

__all__ = ["listen"]

_POLL_S = 0.5  # how often a quiet connection checks `stop` (and the caller's health counts a pass)


def listen(
    db: Database,
    channels: Sequence[str],
    stop: threading.Event,
    log: Any,
    *,
    on_notify: Callable[[str, str], None],
    on_connect: Callable[[], None] = lambda: None,
    on_disconnect: Callable[[BaseException], None] = lambda e: None,
    on_pass: Callable[[], None] = lambda: None,
    name: str = "listener",
    retry_s: float = 0.5,
) -> None:
    """Listen on `channels` until `stop` is set. Blocks; run it on its own thread.

    `on_pass` is called after every quiet interval or batch of notifications while connected (a
    health signal); `name` prefixes the log events (`<name>_disconnected`, `<name>_reconnected`)."""
    delay, failing = retry_s, False
    while not stop.is_set():
        try:
            with db.raw_connect(autocommit=True) as conn:
                for channel in channels:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                on_connect()
                if failing:
                    log.info(f"{name}_reconnected")
                delay, failing = retry_s, False
                while not stop.is_set():
                    for note in conn.notifies(timeout=_POLL_S, stop_after=1):
                        on_notify(note.channel, note.payload)
                    on_pass()
        except Exception as e:  # connection lost, or a callback failed: either way, start over
            on_disconnect(e)
            if not failing:  # once per outage, not once per retry
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning(f"{name}_disconnected", error=first, retry_in_s=delay)
            failing = True
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
