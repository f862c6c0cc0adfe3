"""What a tool receives besides its input: the run's clock, deadline, identity, limits and logger."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from engine.outbound import OutboundPolicy

__all__ = ["RECORD_MULTIPLE", "STEP_OUTPUT_MAX_BYTES", "ToolContext", "ToolLimits"]

STEP_OUTPUT_MAX_BYTES = 10 * 1024 * 1024
# A run attempt's whole record (every step's output, the run's output, errors) may take this many
# times the step output limit: a pipeline of a few large steps fits, a runaway one does not.
RECORD_MULTIPLE = 4


@dataclass(frozen=True)
class ToolLimits:
    """Limits set by the operator (Settings), the same for every run a process executes."""

    http_max_response_bytes: int = 10 * 1024 * 1024
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Largest output (and rendered input) one step may have, as JSON (ORDO_STEP_OUTPUT_MAX_BYTES).
    step_output_max_bytes: int = STEP_OUTPUT_MAX_BYTES
    # Where user-supplied URLs may lead (ORDO_OUTBOUND_ALLOW); default: public addresses only.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)

    def __post_init__(self) -> None:
        if self.step_output_max_bytes < 1024 or self.http_max_response_bytes < 1:
            raise ValueError(f"invalid tool limits {self}")

    @property
    def record_max_bytes(self) -> int:
        """Largest recorded attempt: RECORD_MULTIPLE times the step output limit."""
        return RECORD_MULTIPLE * self.step_output_max_bytes


@dataclass(slots=True)
class ToolContext:
    now: datetime
    deadline: float  # time.monotonic() value after which the step has timed out
    run: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    step_id: str = ""
    limits: ToolLimits = field(default_factory=ToolLimits)
    run_log: Any = field(default=None, repr=False)  # the run's logger (run_id, task_id, worker_id bound)
    is_canceled: Callable[[], bool] = field(default=lambda: False)
    # A handle on Ordo's own database (store.db.Database) for the few tools that read or write Ordo's
    # tables (engine/tools/plant.py); the worker passes it, the engine itself never touches it.
    # None outside a worker (`ordo tool run` without a database, unit tests).
    db: Any = field(default=None, repr=False)
    _log: Any = field(default=None, init=False, repr=False)

    @property
    def log(self) -> Any:
        """The run's logger with this step bound; built on first use, since most tools never log."""
        if self._log is None:
            base = self.run_log if self.run_log is not None else structlog.get_logger()
            self._log = base.bind(step=self.step_id) if self.step_id else base
        return self._log

    def remaining(self) -> float:
        """Seconds left before the step's deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    @classmethod
    def standalone(cls, now: datetime, timeout_s: float, limits: ToolLimits | None = None) -> ToolContext:
        """A context for calling a tool outside a run (`ordo tool run`, tests)."""
        return cls(now=now, deadline=time.monotonic() + timeout_s, limits=limits or ToolLimits())
