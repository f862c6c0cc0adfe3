"""`ordo solve FILE`: solve a job-shop instance from the shell.

Reads the standard job-shop text format or Ordo's JSON solver input, runs `solver.solve` through
the same path a pipeline step takes (catalog input schema, the tool, output schema), and prints the
status, makespan, bound and wall time, or with --json only the tool's JSON output.

Exit codes: 0 a plan was found; 1 none (infeasible, or none within the time limit); 2 bad input.
Registered by cli.main as `app.command("solve")(solve_command)`.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from engine.context import ToolContext, ToolLimits
from engine.registry import ToolRegistry
from engine.runner import call_tool
from engine.tools.jobshop_format import parse_jobshop
from engine.tools.planning_model import DEFAULT_TIME_LIMIT_S
from store.errors import OrdoError

__all__ = ["solve_command"]

_SLACK_S = 30.0  # the tool's deadline leaves room for building the model and reading the plan
_INPUT_ERRORS = {"INPUT_INVALID", "INVALID_INSTANCE", "INVALID_JSON", "UNREADABLE_FILE"}


def solve_command(
    file: Annotated[
        Path, typer.Argument(help="Instance: job-shop text format (JSPLIB) or a solver.solve JSON input.")
    ],
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            help="Search time limit in seconds "
            f"(default: the JSON input's time_limit_s, else {DEFAULT_TIME_LIMIT_S:g}).",
            envvar="ORDO_SOLVE_TIME_LIMIT",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="CP-SAT search workers (default: one per CPU).", envvar="ORDO_SOLVE_WORKERS"
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print only the solver's JSON output.")] = False,
) -> None:
    """Solve a job-shop instance and print makespan, bound, status and wall time."""
    try:
        args = _read_instance(file)
        if time_limit is not None:
            if not math.isfinite(time_limit):
                _fail(f"--time-limit must be a number of seconds, not {time_limit}", 2)
            args["time_limit_s"] = time_limit
        args.setdefault("time_limit_s", DEFAULT_TIME_LIMIT_S)
        if workers is not None:
            args["num_workers"] = workers
        asked = args.get("num_workers")
        cpus = asked if isinstance(asked, int) else os.cpu_count() or 1
        ctx = ToolContext.standalone(
            datetime.now(UTC), float(args["time_limit_s"]) + _SLACK_S, ToolLimits(cpus=max(1, cpus))
        )
        out = call_tool(ToolRegistry.load().require("solver.solve"), args, ctx)
    except OrdoError as e:
        _fail(f"{e.code}: {e.message}", 2 if e.code in _INPUT_ERRORS or e.status in (400, 404, 422) else 1)
    if json_output:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print_summary(file, args, out)
    if not out["assignments"]:
        raise typer.Exit(1)


def _read_instance(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OrdoError(
            f"cannot read {file}: {getattr(e, 'strerror', None) or e}", code="UNREADABLE_FILE"
        ) from None
    if file.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            args = json.loads(text)
        except ValueError as e:
            raise OrdoError(f"{file} is not valid JSON: {e}", code="INVALID_JSON") from None
        if not isinstance(args, dict):
            raise OrdoError(f"{file}: the JSON input must be an object with jobs", code="INVALID_JSON")
        return args
    return parse_jobshop(text, file.name)


def _print_summary(file: Path, args: dict[str, Any], out: dict[str, Any]) -> None:
    operations = sum(len(job["operations"]) for job in args["jobs"])
    machines = {o["machine"] for job in args["jobs"] for op in job["operations"] for o in op["machines"]}
    search = out.get("search", {})
    rows = [
        (
            "instance",
            f"{file.name}: {len(args['jobs'])} jobs, {len(machines)} machines, {operations} operations",
        ),
        ("status", out["status"]),
        ("makespan", _show(out["makespan"])),
        ("bound", _show(out["bound"])),
        ("gap", "-" if out["gap"] is None else f"{100 * out['gap']:.2f}%"),
        ("objective", _show(out["objective"])),
        (
            "wall time",
            f"{out['wall_s']:.3f} s"
            + (f" (search {search['wall_s']:.3f} s, {search['workers']} workers)" if search else ""),
        ),
    ]
    progress = out.get("progress") or []
    if progress:
        first, last = progress[0], progress[-1]
        rows.append(
            (
                "progress",
                f"first plan {_show(first['objective'])} at {first['t_s']:.2f} s"
                + (f", best {_show(last['objective'])} at {last['t_s']:.2f} s" if len(progress) > 1 else ""),
            )
        )
    if out.get("reason"):
        rows.append(("reason", out["reason"]))
    for label, value in rows:
        typer.echo(f"{label:<10} {value}")


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
