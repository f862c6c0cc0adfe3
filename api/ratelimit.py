"""Per-agent rate limiting that holds across API processes and hosts.

A limit of N requests a minute is one allowance per agent, kept in PostgreSQL (store/ratelimit.py:
GCRA over one timestamp per agent, on the database's clock), so every process on every host draws
from the same allowance: N a minute means N, however many processes serve the agent.

A process does not ask the database for every request. It takes a grant of a few requests at once
and admits them locally, on the event loop, without I/O. A grant starts at one request and doubles
while the agent uses each up within `grant_ttl_s`, up to `max_grant`; the database never grants more
than a quarter of what the agent has left, so grants shrink as its allowance runs out. Requests a
process took and did not use within `grant_ttl_s` go back to the allowance (with the process's next
claim for that agent, or by `give_back_idle`, which the app runs every `grant_ttl_s`). So:

- across all processes, an agent is never admitted more than its allowance (each admitted request
  was taken from the shared one);
- a busy agent costs one database statement per grant (up to `max_grant` requests), an occasional
  one costs one per request;
- while other processes hold unused grants of an agent, a process may refuse it a little early: by
  at most what they hold, for at most `grant_ttl_s`.

A refused agent is refused locally until the moment the database named (Retry-After), so a client
that keeps knocking costs no database statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from api.errors import RateLimited
from api.pool import ReadPool
from store import ratelimit as shared
from store.ratelimit import Gcra

__all__ = ["RateLimiter"]

_MAX_GRANT = 64


@dataclass
class _Local:
    """What this process holds of one agent's allowance."""

    left: int = 0  # requests granted and not yet admitted
    expires: float = 0.0  # monotonic: after this, `left` goes back
    size: int = 1  # how many to ask for next
    refused_until: float = 0.0  # monotonic
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one claim at a time per agent


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        reads: ReadPool,
        *,
        grant_ttl_s: float = 1.0,
        max_grant: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gcra = Gcra(per_minute)
        self.per_minute = per_minute
        self.grant_ttl_s = grant_ttl_s
        # At most a twentieth of the minute's allowance lies in one process's grant.
        self.max_grant = max_grant or max(1, min(_MAX_GRANT, per_minute // 20))
        self._reads = reads
        self._clock = clock
        self._agents: dict[UUID, _Local] = {}

    async def check(self, agent_id: UUID) -> None:
        """Admit one request of `agent_id`, or raise RateLimited with the seconds to wait."""
        local = self._agents.get(agent_id)
        if local is None:
            local = self._agents[agent_id] = _Local()
        now = self._clock()
        if local.left > 0 and now < local.expires:
            local.left -= 1  # no await since the check: nothing else ran on the loop in between
            return
        if now < local.refused_until:
            raise RateLimited(local.refused_until - now, self.per_minute)
        async with local.lock:
            now = self._clock()
            if local.left > 0 and now < local.expires:  # another request's claim just refilled it
                local.left -= 1
                return
            unused, local.left = local.left, 0  # expired: give it back with this claim
            if unused == 0 and now < local.expires:
                local.size = min(local.size * 2, self.max_grant)  # used up in time: ask for more
            else:
                local.size = 1
            grant = await self._reads.run(
                shared.claim, agent_id, self.gcra, want=local.size, give_back=unused
            )
            now = self._clock()
            if grant.granted == 0:
                local.refused_until = now + grant.retry_after_s
                raise RateLimited(grant.retry_after_s, self.per_minute)
            local.left = grant.granted - 1
            local.expires = now + self.grant_ttl_s

    async def give_back_idle(self) -> int:
        """Return grants that expired unused to the shared allowance; forget agents gone quiet.
        Returns how many requests went back."""
        now = self._clock()
        unused: dict[UUID, int] = {}
        for agent_id, local in list(self._agents.items()):
            if local.lock.locked() or now < local.expires:
                continue
            if local.left > 0:
                unused[agent_id], local.left = local.left, 0
            elif now >= local.refused_until and now - local.expires > 60.0:
                del self._agents[agent_id]
        if unused:
            # Should this fail (the database is away), these requests stay spent: the allowance
            # refills with time, and a process never admits what it did not take.
            await self._reads.run(shared.give_back, unused, self.gcra)
        return sum(unused.values())

    async def give_back_all(self) -> None:
        """Shutdown: every unused request goes back."""
        for local in self._agents.values():
            local.expires = 0.0
        await self.give_back_idle()

    async def run(self, stop: asyncio.Event, log: Any) -> None:
        """Give back idle grants every `grant_ttl_s` until `stop`, then all of them. Survives any
        failure (logged): a background loop that died would strand grants for good."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.grant_ttl_s)
            try:
                if stop.is_set():
                    await self.give_back_all()
                else:
                    await self.give_back_idle()
            except Exception as e:
                log.warning("rate_limit_give_back_failed", error=f"{type(e).__name__}: {e}"[:300])
