"""Idempotency keys: a POST retried with the same `Idempotency-Key` returns the first response and
writes nothing new.

The key is claimed (inserted) at the start of the transaction that makes the write, and the response
is saved in that same transaction, so the key and the write commit or roll back together. Two
concurrent requests with one key serialise on the primary key: the second waits for the first and
then replays its response. A request that failed left nothing behind and may be retried as new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store.errors import Conflict
from store.sql import load_queries

__all__ = ["DEFAULT_TTL_S", "IdempotencyKeyReused", "Replay", "claim", "fingerprint", "prune", "save"]

Q = load_queries("store", "idempotency.sql")

DEFAULT_TTL_S = 24 * 3600.0


class IdempotencyKeyReused(Conflict):
    """The key was already used for a different request (another route or another body)."""

    code, status = "IDEMPOTENCY_KEY_REUSED", 422


@dataclass(frozen=True)
class Replay:
    status: int
    response: Any


def fingerprint(operation: str, body: Any) -> bytes:
    """What makes two requests "the same": the operation and the body, canonically encoded."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{operation}\n{canonical}".encode()).digest()


def claim(
    conn: Connection,
    agent_id: UUID,
    key: str,
    operation: str,
    fp: bytes,
    *,
    ttl_s: float = DEFAULT_TTL_S,
) -> Replay | None:
    """None: this transaction owns the key, go ahead and `save` the response. A Replay: answer with it."""
    params = {"agent_id": agent_id, "key": key, "operation": operation, "fingerprint": fp, "ttl_s": ttl_s}
    if conn.execute(Q["claim"], params).first() is not None:
        return None
    row = conn.execute(Q["get"], {"agent_id": agent_id, "key": key}).mappings().one()
    if row["operation"] != operation or bytes(row["fingerprint"]) != fp:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used for a different request "
            f"({row['operation']} with another body); send a new key for a new request",
            details={"idempotency_key": key, "first_used_for": row["operation"]},
        )
    if row["status"] is None:  # only possible if a writer forgot to save; never replay half a result
        raise Conflict(
            f"the request with Idempotency-Key {key!r} has no recorded response",
            details={"idempotency_key": key},
        )
    return Replay(row["status"], row["response"])


def save(conn: Connection, agent_id: UUID, key: str, status: int, response: Any) -> None:
    conn.execute(
        Q["save"],
        {"agent_id": agent_id, "key": key, "status": status, "response": json.dumps(response, default=str)},
    )


def prune(conn: Connection, *, ttl_s: float = DEFAULT_TTL_S, batch: int = 5000) -> int:
    return len(conn.execute(Q["prune"], {"ttl_s": ttl_s, "n": batch}).all())
