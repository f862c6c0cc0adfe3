"""What `ordo` commands print, and the arguments they share.

With --json a command prints only JSON on stdout: the same object the API returns for the same thing
(a task, a run, an event, a token), or a list of them for a listing; every such object has an `id`.
Without it, people get tables and lines, with times written exactly as in the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
import yaml

__all__ = ["JsonFlag", "RunRef", "TaskRef", "emit_json", "emit_yaml", "print_run", "run_line", "table"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")]
TaskRef = Annotated[
    str, typer.Argument(metavar="TASK", help="Task id, or a unique prefix of it (4 or more hex digits).")
]
RunRef = Annotated[int, typer.Argument(metavar="RUN", help="Run id (a number).", min=1)]


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


class _Dumper(yaml.SafeDumper):
    """YAML for people: a text of several lines (an RFC 5545 block) as a literal block, as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def emit_yaml(value: Any) -> None:
    typer.echo(yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True).rstrip())


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, empty: str = "(none)") -> None:
    if not rows:
        typer.echo(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def run_line(run: dict[str, Any]) -> None:
    """A run in a few lines: state, attempt, task, times, and each step with its output or error."""
    duration = ""
    if run["started_at"] and run["finished_at"]:
        ms = (
            datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])
        ).total_seconds() * 1000
        duration = f" {ms:.1f}ms"
    typer.echo(
        f"run {run['id']}  {run['state']:<9} attempt {run['attempt']}/{run['max_attempts']}  "
        f"task {run['task_title']!r} ({run['task_id']})  scheduled {run['scheduled_for']}{duration}"
    )
    for step in run["steps"] or []:
        detail = step.get("error") if step.get("error") else step.get("output")
        text = json.dumps(detail, default=str)
        if len(text) > 100:
            text = text[:97] + "..."
        typer.echo(f"    {step['id']:<16} {step['state']:<9} {step.get('duration_ms', 0):>9.2f}ms  {text}")
    if run["error"] and not run["steps"]:
        typer.echo(f"    error: {run['error'].get('code')}: {run['error'].get('message')}")


def print_run(run: dict[str, Any], as_json: bool) -> None:
    """A run with its earlier attempts (the API's RunDetail with --json)."""
    if as_json:
        emit_json(run)
        return
    run_line(run)
    for attempt in run.get("attempts", [])[:-1]:
        error = attempt["error"] or {}
        typer.echo(
            f"  earlier attempt {attempt['attempt']}: {attempt['state']} "
            f"{error.get('code', '')} {error.get('message', '')}"
        )
