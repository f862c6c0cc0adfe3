"""Authorisation at run time: does a task's owner still hold the scopes its tools need?

Scopes are granted by tokens. An agent holds a scope while it is not disabled and at least one of
its tokens that is neither revoked nor expired grants it (or grants `admin`). So revoking or letting
expire one token of several costs nothing as long as another live token grants the same scopes, and
revoking an agent's last token that grants `tools:http` takes `tools:http` from its tasks. The local
CLI owner (tasks added with `ordo task add`) holds every scope.

When a run's owner lacks a scope, the run ends dead with SCOPE_REVOKED and the task is paused, with a
`task.paused` event for its owner, so a schedule never fails silently forever. Resuming it (after
granting the scope again) picks the schedule up from then.

Workers cache each owner's scopes for `ttl_s` (and no later than the first expiry of a token they
rely on); a revocation NOTIFY (store.agents.AUTH_CHANNEL) empties the cache at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from store import tasks as store_tasks
from store.agents import ADMIN
from store.db import Database
from store.errors import OrdoError
from store.sql import load_queries
from workers.inputs import TaskDef

__all__ = ["Owners"]

Q = load_queries("workers", "queries.sql")

_TTL_S = 10.0


@dataclass(frozen=True)
class _Grant:
    scopes: frozenset[str]
    valid_until: float  # monotonic


class Owners:
    def __init__(self, ttl_s: float = _TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._grants: dict[uuid.UUID, _Grant] = {}
        self._revoked: dict[uuid.UUID, tuple[uuid.UUID, list[str]]] = {}  # task -> (owner, missing)

    def invalidate(self) -> None:
        """A token was revoked or an agent disabled: ask the database again before the next run."""
        with self._lock:
            self._grants.clear()

    def ensure(self, conn: Connection, tasks: Iterable[TaskDef]) -> None:
        """Know the current scopes of the owners of these tasks (those whose tools need any)."""
        now = time.monotonic()
        with self._lock:
            stale = {
                t.agent_id
                for t in tasks
                if t.scopes
                and t.agent_id != store_tasks.LOCAL_AGENT_ID
                and (t.agent_id not in self._grants or self._grants[t.agent_id].valid_until <= now)
            }
        if not stale:
            return
        rows = conn.execute(Q["owner_scopes"], {"ids": list(stale)}).mappings().all()
        grants = {}
        for row in rows:
            until = now + self.ttl_s
            if row["next_expiry_s"] is not None:
                until = min(until, now + float(row["next_expiry_s"]))
            grants[row["id"]] = _Grant(frozenset(row["scopes"] or ()), until)
        for agent_id in stale - grants.keys():  # no such agent any more: it holds nothing
            grants[agent_id] = _Grant(frozenset(), now + self.ttl_s)
        with self._lock:
            self._grants.update(grants)

    def missing(self, task: TaskDef) -> list[str]:
        """The scopes the task's tools need that its owner does not hold now (empty: may run)."""
        if not task.scopes or task.agent_id == store_tasks.LOCAL_AGENT_ID:
            return []
        grant = self._grants.get(task.agent_id)
        if grant is None:  # not loaded (ensure failed): let the run go, the next ensure decides
            return []
        if ADMIN in grant.scopes:
            return []
        return sorted(task.scopes - grant.scopes)

    def revoked(self, task_id: uuid.UUID, agent_id: uuid.UUID, missing: list[str]) -> None:
        """Remember to pause this task (called from any run thread)."""
        with self._lock:
            self._revoked[task_id] = (agent_id, missing)

    def pause_revoked(self, db: Database, log: Any, now: datetime | None = None) -> None:
        """Pause the tasks whose runs failed with SCOPE_REVOKED, each with a task.paused event."""
        if not self._revoked:
            return
        with self._lock:
            todo, self._revoked = self._revoked, {}
        for task_id, (agent_id, missing) in todo.items():
            try:
                with db.tx() as conn:
                    before = store_tasks.get(conn, task_id)
                    if before["status"] != "active":
                        continue
                    store_tasks.pause(
                        conn,
                        task_id,
                        reason={
                            "reason": "SCOPE_REVOKED",
                            "missing_scopes": missing,
                            "message": "the task's owner no longer holds "
                            + ", ".join(missing)
                            + "; grant it again and resume the task",
                        },
                    )
                log.warning(
                    "task_paused", task_id=str(task_id), reason="SCOPE_REVOKED", missing_scopes=missing
                )
            except OrdoError as e:
                log.warning("task_pause_failed", task_id=str(task_id), error=e.message)
                with self._lock:
                    self._revoked.setdefault(task_id, (agent_id, missing))
