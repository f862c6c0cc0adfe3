"""Generated availability in PostgreSQL: writing a generation, reading shifts and totals, and the
change log of each generation.

Writing (the caller holds store.plant.lock_plant, in one transaction, so a reader sees the old range
or the new one and never a mix):

* `begin_generation` records the generation; its id stamps the rows it writes.
* Rows go in with binary COPY, streamed: `RowTemplate` encodes the shifts of one plan once, and
  `render` stamps them with each resource's id (and its exceptions' ids) in C-level joins, so the
  cost per resource is a few byte joins whatever its number of shifts.
* A fresh range (`range_has_rows` false) is copied straight into availability. Otherwise rows are
  copied to a temporary stage and `apply_stage` diffs them against the stored range in one pass (a
  full join into a temporary diff table): rows the new generation reproduces exactly stay untouched;
  the diff's rows are removed, added or changed, and logged shift by shift in availability_change.
* `finish_generation` writes the per-resource summary and the totals.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store.sql import load_queries

__all__ = [
    "COPY_TRAILER",
    "RowTemplate",
    "apply_stage",
    "begin_generation",
    "change_page",
    "copy_writer",
    "day_totals",
    "finish_generation",
    "get_generation",
    "latest_generation",
    "list_generations",
    "prune_generations",
    "range_has_rows",
    "record_fresh_summary",
    "shift_rows",
    "snapshot",
    "top_changes",
]

Q = load_queries("store", "plant_availability.sql")

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_DAY = date(2000, 1, 1).toordinal()
_FIELDS = 11  # the columns of copy_rows, in order
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
_NULL = struct.pack("!i", -1)
_UUID_LEN = struct.pack("!i", 16)
_ROW_START = struct.pack("!h", _FIELDS) + _UUID_LEN  # field count, then the resource id's length


class RowTemplate:
    """The binary COPY encoding of one plan's rows, with the resource id (and exception ids) left as
    slots. `rows` are tuples (shift_date, start, end, shift_code, crew, status, capacity_pct,
    exception slot or None, note), start/end aware datetimes."""

    def __init__(self, rows: Sequence[Sequence[Any]], generation_id: int) -> None:
        self.rows = len(rows)
        generation = struct.pack("!iq", 8, generation_id)
        # Groups of literal pieces joined by the resource id, each followed by an exception slot (or
        # None): [(pieces, slot), ...]. A row is: count+len, <resource id>, fields..., and an
        # exception field that is NULL or a slot.
        groups: list[tuple[list[bytes], int | None]] = []
        pieces: list[bytes] = [_ROW_START]
        for shift_date, start, end, code, crew, status, capacity, slot, note in rows:
            head = b"".join(
                (
                    struct.pack("!ii", 4, shift_date.toordinal() - _PG_EPOCH_DAY),
                    struct.pack("!iq", 8, _micros(start)),
                    struct.pack("!iq", 8, _micros(end)),
                    _text(code),
                    _text(crew),
                    _text(status),
                    struct.pack("!ih", 2, capacity),
                )
            )
            tail = _text(note) + generation
            if slot is None:
                pieces.append(head + _NULL + tail + _ROW_START)
            else:
                pieces.append(head + _UUID_LEN)
                groups.append((pieces, slot))
                pieces = [tail + _ROW_START]
        pieces[-1] = pieces[-1][: -len(_ROW_START)]  # no row after the last one
        groups.append((pieces, None))
        self._groups = groups if rows else []

    def render(self, resource_id: UUID, exception_ids: Sequence[UUID] = ()) -> bytes:
        rid = resource_id.bytes
        out: list[bytes] = []
        for pieces, slot in self._groups:
            out.append(rid.join(pieces))
            if slot is not None:
                out.append(exception_ids[slot].bytes)
        return b"".join(out)


def _micros(t: datetime) -> int:
    delta = t - _PG_EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode()
    return struct.pack("!i", len(raw)) + raw


# -- writing a generation -------------------------------------------------------------------------


def begin_generation(
    conn: Connection,
    agent_id: UUID,
    start: date,
    end: date,
    *,
    requested: Sequence[str] | None,
    regenerate: bool,
    run_id: int | None,
) -> int:
    params = {
        "agent_id": agent_id,
        "start": start,
        "end": end,
        "requested": None if requested is None else list(requested),
        "regenerate": regenerate,
        "run_id": run_id,
    }
    return conn.execute(Q["begin_generation"], params).scalar_one()


def range_has_rows(conn: Connection, resource_ids: Sequence[UUID], start: date, end: date) -> bool:
    params = {"resource_ids": list(resource_ids), "start": start, "end": end}
    return bool(conn.execute(Q["range_has_rows"], params).scalar_one())


@contextmanager
def copy_writer(conn: Connection, *, staged: bool) -> Iterator[Any]:
    """A binary COPY into availability (staged: into a fresh temporary stage table) on the
    transaction's own connection; yields `write(bytes)`. Header and trailer are added here."""
    raw = conn.connection.driver_connection
    assert raw is not None
    if staged:
        conn.execute(Q["create_stage"])
    statement = Q["copy_stage" if staged else "copy_rows"].text
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_HEADER)
        yield copy.write
        copy.write(COPY_TRAILER)


def apply_stage(
    conn: Connection,
    generation_id: int,
    resource_ids: Sequence[UUID],
    start: date,
    end: date,
    *,
    regenerate: bool,
) -> None:
    """Replace the stored range by the staged rows (regenerate), or only fill its days that hold no
    row yet (not regenerate); log what changed and summarise it per resource."""
    generation = {"generation_id": generation_id}
    if regenerate:
        conn.execute(Q["diff_memory"])
        conn.execute(Q["diff_stage"], {"resource_ids": list(resource_ids), "start": start, "end": end})
    else:
        conn.execute(Q["diff_empty_days"])
    conn.execute(Q["analyze_diff"])
    conn.execute(Q["remove_stale"], generation)
    conn.execute(Q["add_changed"], generation)
    conn.execute(Q["summarise_changes"], generation)


def record_fresh_summary(conn: Connection, generation_id: int, added: Mapping[UUID, int]) -> None:
    params = {"generation_id": generation_id, "resource_ids": list(added), "added": list(added.values())}
    conn.execute(Q["record_fresh_summary"], params)


def finish_generation(
    conn: Connection, generation_id: int, *, resources: int, rows: int, fresh: bool, duration_s: float
) -> dict[str, Any]:
    params = {
        "generation_id": generation_id,
        "resources": resources,
        "rows": rows,
        "fresh": fresh,
        "duration_s": duration_s,
    }
    return dict(conn.execute(Q["finish_generation"], params).mappings().one())


def top_changes(conn: Connection, generation_id: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(Q["top_changes"], {"generation_id": generation_id, "limit": limit}).mappings()
    return [
        {
            "resource_id": str(r["resource_id"]),
            "code": r["code"],
            "added": r["added"],
            "removed": r["removed"],
            "changed": r["changed"],
        }
        for r in rows
    ]


# -- reading --------------------------------------------------------------------------------------


def snapshot(conn: Connection) -> None:
    """Make the rest of this (new) transaction read one consistent, read-only snapshot."""
    conn.execute(Q["snapshot"])


def day_totals(
    conn: Connection, resource_ids: Sequence[UUID], start: date, end: date, *, batch: int = 5000
) -> Iterator[Any]:
    """Per resource and date (in that order) the hours by status, streamed `batch` rows at a time."""
    params = {"resource_ids": list(resource_ids), "start": start, "end": end}
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(Q["day_totals"], params)
    yield from result.mappings()


def shift_rows(
    conn: Connection, resource_ids: Sequence[UUID], start: date, end: date, *, batch: int = 5000
) -> Iterator[Any]:
    """The rows, streamed from a server-side cursor `batch` at a time (bounded memory)."""
    params = {"resource_ids": list(resource_ids), "start": start, "end": end}
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(Q["shift_rows"], params)
    yield from result.mappings()


def list_generations(
    conn: Connection,
    owner: UUID | None,
    *,
    after_id: int | None = None,
    after_time: datetime | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    params = {"owner": owner, "after_id": after_id, "after_time": after_time, "limit": limit}
    return [dict(r) for r in conn.execute(Q["list_generations"], params).mappings()]


def latest_generation(conn: Connection, owner: UUID | None) -> dict[str, Any] | None:
    row = conn.execute(Q["latest_generation"], {"owner": owner}).mappings().one_or_none()
    return dict(row) if row else None


def get_generation(conn: Connection, generation_id: int, owner: UUID | None) -> dict[str, Any] | None:
    row = conn.execute(Q["get_generation"], {"id": generation_id, "owner": owner}).mappings().one_or_none()
    return dict(row) if row else None


def prune_generations(conn: Connection, cutoff: datetime, batch: int = 20) -> int:
    """Delete up to `batch` generations recorded before `cutoff` with their change logs (each plant's
    latest stays); returns how many went. Callers loop, one transaction per batch."""
    return len(conn.execute(Q["prune_generations"], {"cutoff": cutoff, "n": batch}).all())


def change_page(
    conn: Connection,
    generation: Mapping[str, Any],
    *,
    after: tuple[UUID, datetime] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of a generation's shift-level changes, in (resource, start) order."""
    params: dict[str, Any] = {
        "generation_id": generation["id"],
        "after_resource": after[0] if after else None,
        "after_start": after[1] if after else None,
        "limit": limit,
    }
    if generation["fresh"]:
        params.update(start=generation["start_date"], end=generation["end_date"])
        rows: Iterable[Any] = conn.execute(Q["fresh_rows"], params).mappings()
    else:
        rows = conn.execute(Q["change_rows"], params).mappings()
    return [dict(r) for r in rows]
