"""The runs a worker holds: leased or claimed, executing or waiting for the group commit.

Shared by the dispatcher (adds leases, counts slots), run threads (start and finish), the heartbeat
(renews, learns of cancel requests and lost leases) and the completer's callback (forgets what was
written). Every access goes through one lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Held", "Lease"]


@dataclass(eq=False, slots=True)
class Lease:
    """A run this worker executes: leased (token set), or claimed inside an open transaction (None)."""

    id: int
    token: uuid.UUID | None
    task_id: uuid.UUID
    attempt: int
    max_attempts: int
    received: float  # monotonic time the lease arrived
    started_at: datetime  # database clock at lease
    row: Mapping[str, Any]
    started: bool = False
    finished: bool = False
    handed_back: bool = False  # released at shutdown before it started: never run it

    @classmethod
    def of(cls, row: Mapping[str, Any], received: float, token: uuid.UUID | None) -> Lease:
        return cls(
            id=row["id"],
            token=token,
            task_id=row["task_id"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            received=received,
            started_at=row["started_at"],
            row=row,
        )


class Held:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._executing = 0
        self._cancel_requested: set[int] = set()
        self._lost: set[int] = set()

    # -- slots ------------------------------------------------------------------------------------

    @property
    def executing(self) -> int:
        return self._executing

    def free_slots(self) -> int:
        with self._lock:
            # Finished runs waiting for the group commit still hold leases. Up to one batch of them
            # may wait while the next batch runs (so writing and running overlap); beyond that a
            # slow database slows leasing instead of piling up leases in memory.
            return min(self.concurrency - self._executing, 2 * self.concurrency - len(self._leases))

    def begin(self, n: int = 1) -> None:
        with self._lock:
            self._executing += n

    def end(self) -> None:
        with self._lock:
            self._executing -= 1

    # -- leases -----------------------------------------------------------------------------------

    def add(self, leases: Iterable[Lease]) -> None:
        with self._lock:
            for lease in leases:
                self._leases[lease.id] = lease

    def forget(self, ids: Iterable[int]) -> None:
        """The outcomes of these runs were written (or given up): the worker holds them no more."""
        with self._lock:
            for run_id in ids:
                self._leases.pop(run_id, None)
                self._cancel_requested.discard(run_id)
                self._lost.discard(run_id)

    def leased(self) -> list[Lease]:
        """Leases to renew: every held run with a token."""
        with self._lock:
            return [lease for lease in self._leases.values() if lease.token is not None]

    def start(self, lease: Lease) -> bool:
        """Mark the lease started; False when it was handed back first (then do not run it)."""
        with self._lock:
            if lease.handed_back:
                return False
            lease.started = True
            return True

    def take_unstarted(self) -> list[Lease]:
        """Shutdown: leases not started yet, marked so that a run thread that has not begun skips
        them. They must then be handed back (release_unstarted) and forgotten."""
        with self._lock:
            unstarted = [lease for lease in self._leases.values() if not lease.started]
            for lease in unstarted:
                lease.handed_back = True
            return unstarted

    def unfinished(self) -> list[Lease]:
        with self._lock:
            return [lease for lease in self._leases.values() if not lease.finished]

    # -- what the heartbeat learns -------------------------------------------------------------

    def is_canceled(self, run_id: int) -> bool:
        return run_id in self._cancel_requested

    def renewed(self, asked: list[Lease], renewed: Mapping[int, bool]) -> list[Lease]:
        """Note which of `asked` were renewed (id -> cancel requested); return the newly lost ones."""
        lost = []
        with self._lock:
            for run_id, cancel in renewed.items():
                if cancel:
                    self._cancel_requested.add(run_id)
            for lease in asked:
                if lease.id not in renewed and lease.id in self._leases and lease.id not in self._lost:
                    self._lost.add(lease.id)
                    lost.append(lease)
        return lost
