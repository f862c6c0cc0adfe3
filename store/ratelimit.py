"""The shared state of per-agent rate limits: grants of an agent's allowance, taken and given back.

The algorithm (GCRA) and its statements are in store/ratelimit.sql; api/ratelimit.py decides how much
to ask for and spends it. `Gcra` holds the two numbers a limit of N requests a minute comes down to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Connection

from store.sql import load_queries

__all__ = ["Gcra", "Grant", "claim", "give_back"]

Q = load_queries("store", "ratelimit.sql")


@dataclass(frozen=True)
class Gcra:
    """N requests a minute: any burst of up to N, then one every 60/N seconds."""

    per_minute: int

    def __post_init__(self) -> None:
        if self.per_minute < 1:
            raise ValueError("per_minute must be at least 1")

    @property
    def interval_s(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance_s(self) -> float:
        return 60.0 - self.interval_s  # a whole minute's allowance may arrive at once


@dataclass(frozen=True)
class Grant:
    granted: int  # requests the caller may now admit (0: refused)
    retry_after_s: float  # when refused: seconds until one request is available again


def claim(conn: Connection, agent_id: UUID, gcra: Gcra, *, want: int, give_back: int = 0) -> Grant:
    """Give back `give_back` unused requests, then take up to `want` of the agent's allowance."""
    row = conn.execute(
        Q["claim"],
        {
            "agent_id": agent_id,
            "want": want,
            "give_back": give_back,
            "interval_s": gcra.interval_s,
            "tolerance_s": gcra.tolerance_s,
        },
    ).one()
    return Grant(int(row.granted), float(row.retry_after_s))


def give_back(conn: Connection, unused: Mapping[UUID, int], gcra: Gcra) -> None:
    """Return requests taken and not used, per agent."""
    if not unused:
        return
    conn.execute(
        Q["give_back"],
        {"agent_ids": list(unused), "counts": list(unused.values()), "interval_s": gcra.interval_s},
    )
