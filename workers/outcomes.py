"""Finished attempts on their way to history: each serialised and size-checked on its own, then
written in batches by one statement family (record_outcomes in queries.sql).

One run, one blast radius: an outcome that cannot be recorded as it is (larger than the record
limit, not expressible as JSON, holding a character PostgreSQL refuses, or refused by the database
itself) becomes that run's own `dead` outcome with the reason, keeping its step records without
their outputs. It never fails the batch it would have joined, and it is not retried, since running
it again would produce the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from engine.values import escapes_nul
from observability import metrics
from store.sql import load_queries

__all__ = [
    "BATCH_MAX_BYTES",
    "Finished",
    "Outcome",
    "chunked",
    "is_refusal",
    "record",
    "refused",
    "serialise",
]

Q = load_queries("workers", "queries.sql")

# SQLSTATE classes that mean "this data cannot be stored" rather than "the database is away":
# data exceptions (22: e.g. \u0000 in jsonb), integrity (23), program limits (54: e.g. jsonb size).
_REFUSAL_CLASSES = ("22", "23", "54")
_KEPT_STEP_FIELDS = ("id", "uses", "state", "started_at", "duration_ms")
# The most outcome bytes one record_outcomes statement carries. Each record is bounded on its own
# (4 x ORDO_STEP_OUTPUT_MAX_BYTES), but a batch of them is not: 32 records of 39 MB make a 1.25 GB
# statement, which PostgreSQL refuses by closing the connection (a message is at most 1 GB; a jsonb
# value at most 256 MB), and that reads as "the database is away", retried forever. Larger batches
# are written as several statements; a record larger than this goes alone.
BATCH_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished attempt, as record_outcomes reads it."""

    id: int
    token: UUID | None  # None: claimed (inline) in the recording transaction, never leased
    attempt: int
    state: str  # succeeded | failed (will be retried) | dead | canceled
    retry_in_s: float | None
    duration_s: float
    steps: list[dict[str, Any]]
    output: dict[str, Any] | None
    error: dict[str, Any] | None


@dataclass(slots=True)
class Finished:
    """An outcome serialised on its own, ready to join a batch: `doc` is one JSON object."""

    id: int
    state: str
    doc: bytes
    task_id: UUID | None = None  # for log lines about the run (not part of the record)


def serialise(outcome: Outcome, record_max_bytes: int, task_id: UUID | None = None) -> Finished:
    """The outcome as JSON, or, when it cannot be recorded as it is, the run's dead outcome saying why."""
    try:
        # orjson writes the dataclass (and its UUID) as it is: about ten times faster than building
        # dicts for json.dumps, which at thousands of runs a second is a tenth of the worker's CPU.
        doc = orjson.dumps(outcome, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError) as e:
        return unrecordable(
            outcome, "UNRECORDABLE_OUTPUT", f"the run's record is not valid JSON: {e}", task_id
        )
    if len(doc) > record_max_bytes:
        return unrecordable(
            outcome,
            "OUTPUT_TOO_LARGE",
            f"the run's record is {len(doc)} bytes, more than the {record_max_bytes} allowed "
            "(4 x ORDO_STEP_OUTPUT_MAX_BYTES)",
            task_id,
        )
    if escapes_nul(doc):
        return unrecordable(
            outcome,
            "UNRECORDABLE_OUTPUT",
            "the run's record contains the character U+0000, which PostgreSQL cannot store in JSON",
            task_id,
        )
    return Finished(outcome.id, outcome.state, _with_size(doc), task_id)


def unrecordable(outcome: Outcome, code: str, message: str, task_id: UUID | None = None) -> Finished:
    """The run ends dead at once with `code`: its steps are kept without their outputs or errors."""
    metrics.RUNS_UNRECORDABLE.labels(code).inc()
    steps = [
        {k: step[k] for k in _KEPT_STEP_FIELDS if k in step}
        for step in (outcome.steps if isinstance(outcome.steps, list) else [])
        if isinstance(step, dict)
    ]
    dead = Outcome(
        id=outcome.id,
        token=outcome.token,
        attempt=outcome.attempt,
        state="dead",
        retry_in_s=None,
        duration_s=outcome.duration_s,
        steps=steps,
        output=None,
        error={"code": code, "message": message, "retryable": False},
    )
    try:
        doc = orjson.dumps(dead, default=str)
    except (TypeError, orjson.JSONEncodeError):  # a step id that is not text: keep nothing of them
        doc = orjson.dumps(_replace(dead, steps=[]), default=str)
    return Finished(outcome.id, "dead", _with_size(doc), task_id)


def refused(finished: Finished, reason: str) -> Finished:
    """The replacement for an outcome the database refused to store."""
    data = orjson.loads(finished.doc)
    outcome = Outcome(
        id=data["id"],
        token=None if data["token"] is None else UUID(data["token"]),
        attempt=data["attempt"],
        state=data["state"],
        retry_in_s=None,
        duration_s=data["duration_s"],
        steps=data["steps"],
        output=None,
        error=None,
    )
    return unrecordable(
        outcome, "UNRECORDABLE_OUTPUT", f"the database refused the run's record: {reason}", finished.task_id
    )


def record(conn: Connection, batch: list[Finished], worker_id: str) -> set[int]:
    """Write a batch (fenced), in one statement per BATCH_MAX_BYTES; return the ids that were recorded."""
    recorded: set[int] = set()
    for part in chunked(batch):
        rows = conn.execute(
            Q["record_outcomes"],
            {
                "ids": [f.id for f in part],
                "batch": (b"[" + b",".join(f.doc for f in part) + b"]").decode(),
                "worker_id": worker_id,
            },
        )
        recorded.update(rows.scalars().all())
    return recorded


def chunked(batch: list[Finished], max_bytes: int | None = None) -> list[list[Finished]]:
    """`batch` in consecutive parts of at most `max_bytes` (BATCH_MAX_BYTES) of records each (a larger
    record alone)."""
    if max_bytes is None:
        max_bytes = BATCH_MAX_BYTES
    parts: list[list[Finished]] = []
    part: list[Finished] = []
    size = 0
    for finished in batch:
        if part and size + len(finished.doc) > max_bytes:
            parts.append(part)
            part, size = [], 0
        part.append(finished)
        size += len(finished.doc)
    if part:
        parts.append(part)
    return parts


def is_refusal(exc: BaseException) -> str | None:
    """The database's reason when `exc` (or what it wraps) says the data cannot be stored; None when
    it is anything else (a lost connection, a shutdown: retry the same write later)."""
    seen = 0
    while exc is not None and seen < 5:
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(orig, psycopg.Error):
            state = orig.sqlstate or ""
            if state[:2] in _REFUSAL_CLASSES:
                text = str(orig).strip()
                return text.splitlines()[0] if text else state
            return None
        exc = exc.__cause__  # type: ignore[assignment]
        seen += 1
    return None


def _replace(outcome: Outcome, **changes: Any) -> Outcome:
    fields = {name: getattr(outcome, name) for name in Outcome.__slots__}  # type: ignore[attr-defined]
    fields.update(changes)
    return Outcome(**fields)


def _with_size(doc: bytes) -> bytes:
    """Add the record's own size (task_run.record_bytes; listings read it) to the JSON object."""
    return doc[:-1] + b',"record_bytes":' + str(len(doc)).encode() + b"}"
