"""Token verification with a small cache, so that most requests authenticate without touching the
database, and revocation still takes effect at once.

A verified token is remembered (keyed by its SHA-256, never the token itself) with its principal for
at most `ttl_s`, after which the next request checks it in the database again (which also records
`last_used_at`). Revoking a token or deleting an agent NOTIFYs `store.agents.AUTH_CHANNEL` in the
same transaction; a listener thread in every API process empties the cache when it hears it, and
the process that revoked empties its own at once. While the listener is not connected (starting,
database restarting) the cache is not used at all, since a revocation could go unheard. A generation
counter keeps a lookup that raced with a revocation from caching what it read before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from store import agents
from store.agents import Principal
from store.db import Database
from store.listen import listen

__all__ = ["AuthListener", "TokenCache"]


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    verified_at: float  # monotonic


class TokenCache:
    def __init__(
        self, ttl_s: float = 60.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._enabled = False

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: bytes) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None or not self._enabled:
            return None
        if self._clock() - entry.verified_at >= self.ttl_s:
            return None
        expires_at = entry.principal.expires_at
        if expires_at is not None and expires_at <= datetime.now(UTC):
            return None
        return entry.principal

    def put(self, key: bytes, principal: Principal, generation: int) -> None:
        """Remember a principal verified by a lookup that started at `generation`."""
        with self._lock:
            if not self._enabled or generation != self._generation:
                return  # a revocation was heard while the lookup ran: what it read may be stale
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = _Entry(principal, self._clock())

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def enable(self, enabled: bool) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._enabled = enabled


class AuthListener:
    """LISTEN for revocations and empty the cache on each; disable it while disconnected."""

    def __init__(self, db: Database, cache: TokenCache, log: object, *, retry_s: float = 1.0) -> None:
        self.db = db
        self.cache = cache
        self.log = log
        self.retry_s = retry_s

    def run(self, stop: threading.Event) -> None:
        listen(
            self.db,
            [agents.AUTH_CHANNEL],
            stop,
            self.log,
            on_notify=lambda _channel, _payload: self.cache.invalidate(),
            on_connect=lambda: self.cache.enable(True),
            on_disconnect=lambda _error: self.cache.enable(False),
            name="auth_listener",
            retry_s=self.retry_s,
        )
        self.cache.enable(False)
