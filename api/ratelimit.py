"""Per-agent rate limiting: the generic cell rate algorithm (a token bucket without a refill timer).

Each agent may send `per_minute` requests in any burst and then one every 60/per_minute seconds. The
state is one float per agent: its theoretical arrival time. It lives in this process: with
`ORDO_API_WORKERS=N` each server process enforces the limit on the requests it receives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from api.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.tolerance = 60.0 - self.interval  # a whole minute's allowance may arrive at once
        self._clock = clock
        self._tat: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def check(self, key: Hashable) -> None:
        """Count one request for `key`, or raise RateLimited with the seconds to wait."""
        now = self._clock()
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            allowed_at = tat - self.tolerance
            if allowed_at > now:
                raise RateLimited(allowed_at - now, self.per_minute)
            self._tat[key] = tat + self.interval
            if len(self._tat) > 10_000:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
