"""The worker's listener: wakes the dispatcher when work that is already due is enqueued (NOTIFY
ordo_due_work), and tells the owners' scope cache when a token is revoked or an agent disabled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from store.agents import AUTH_CHANNEL
from store.db import Database
from store.listen import listen
from workers.health import LoopHealth

__all__ = ["NOTIFY_CHANNEL", "Listener"]

NOTIFY_CHANNEL = "ordo_due_work"


class Listener:
    def __init__(
        self,
        db: Database,
        wake: threading.Event,
        on_auth_change: Callable[[], None],
        health: LoopHealth,
        log: Any,
    ) -> None:
        self.db = db
        self.wake = wake
        self.on_auth_change = on_auth_change
        self.health = health
        self.log = log

    def run(self, stop: threading.Event) -> None:
        listen(
            self.db,
            [NOTIFY_CHANNEL, AUTH_CHANNEL],
            stop,
            self.log,
            on_notify=self._notified,
            on_connect=self._connected,
            on_disconnect=self.health.failed,
            on_pass=self.health.ok,
        )

    def _notified(self, channel: str, _payload: str) -> None:
        if channel == NOTIFY_CHANNEL:
            self.wake.set()
        else:
            self.on_auth_change()

    def _connected(self) -> None:
        # Anything enqueued or revoked while nobody listened went unheard.
        self.wake.set()
        self.on_auth_change()
        self.health.ok()
