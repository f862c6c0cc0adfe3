"""The standard job-shop text format (JSPLIB, OR-Library), read into a solver.solve input.

    # comment lines start with '#'
    2 3                 <- jobs machines
    0 5  1 4  2 3       <- per job: (machine duration) pairs in processing order, machines from 0
    2 2  0 6  1 1

Jobs become J0, J1, ...; their operations O0, O1, ...; machines M0, M1, .... Pure: the caller reads
the file. Errors name the line and raise Permanent with code INVALID_INSTANCE.
"""

from __future__ import annotations

from typing import Any, NoReturn

from store.errors import Permanent

__all__ = ["parse_jobshop", "to_jobshop"]


def parse_jobshop(text: str, source: str = "instance") -> dict[str, Any]:
    """A solver.solve input (jobs and machines) from the text of a standard job-shop instance."""
    rows = [
        (number, line.split())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        _fail(source, 0, "no 'jobs machines' line: the file is empty or only comments")
    (number, header), *body = rows
    counts = _integers(source, number, header)
    if len(counts) != 2 or counts[0] < 1 or counts[1] < 1:
        _fail(source, number, f"expected 'jobs machines' (two positive integers), got {' '.join(header)!r}")
    n_jobs, n_machines = counts
    if len(body) < n_jobs:
        _fail(
            source,
            body[-1][0] if body else number,
            f"the header announces {n_jobs} jobs, the file has {len(body)}",
        )
    jobs = []
    for j, (number, fields) in enumerate(body[:n_jobs]):
        values = _integers(source, number, fields)
        if not values or len(values) % 2:
            _fail(source, number, "a job line needs (machine duration) pairs")
        operations = []
        for t in range(0, len(values), 2):
            machine, duration = values[t], values[t + 1]
            if not 0 <= machine < n_machines:
                _fail(source, number, f"machine {machine} is outside 0..{n_machines - 1}")
            if duration < 0:
                _fail(source, number, f"duration {duration} is negative")
            operations.append(
                {"id": f"O{t // 2}", "machines": [{"machine": f"M{machine}", "duration": duration}]}
            )
        jobs.append({"id": f"J{j}", "operations": operations})
    return {"jobs": jobs, "machines": [{"id": f"M{m}"} for m in range(n_machines)]}


def to_jobshop(jobs: list[list[tuple[int, int]]], comment: str = "") -> str:
    """The text of an instance given per job its (machine, duration) pairs (for generated instances)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines.append(f"{len(jobs)} {1 + max(m for job in jobs for m, _ in job)}")
    lines += ["  ".join(f"{m} {d}" for m, d in job) for job in jobs]
    return "\n".join(lines) + "\n"


def _integers(source: str, number: int, fields: list[str]) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        _fail(source, number, f"expected integers, got {' '.join(fields)!r}")


def _fail(source: str, number: int, message: str) -> NoReturn:
    where = f"{source}:{number}" if number else source
    raise Permanent(f"{where}: {message}", code="INVALID_INSTANCE", details={"line": number})
