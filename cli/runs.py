"""`ordo runs` (the history, or with --upcoming what is coming) and `ordo run show|cancel|retry RUN`,
as GET /runs, GET /runs/upcoming and /runs/{id}... do. `ordo run RUN` is short for `ordo run show RUN`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from sqlalchemy import Connection
from typer.core import TyperGroup

from cli.output import JsonFlag, RunRef, emit_json, print_run, run_line
from cli.runtime import fail
from cli.session import session
from store import runs as store_runs
from store.domain import HISTORY_STATES

__all__ = ["run_app", "runs_command"]


def runs_command(
    task: Annotated[
        str | None,
        typer.Option("--task", metavar="TASK", help="Only this task's runs (id or unique prefix)."),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help=f"Only runs in this state: {', '.join(HISTORY_STATES)}."),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed (to be retried) and dead runs.")
    ] = False,
    upcoming: Annotated[
        bool,
        typer.Option(
            "--upcoming",
            help="What is coming instead: occurrences written ahead (state scheduled), soonest first.",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Run history: what has run or is due now, newest scheduled first, with every step's state,
    timing and output. With --upcoming: what the scheduler has written ahead, soonest first."""
    with session() as s:
        if state is not None and state not in HISTORY_STATES:
            hint = "; for scheduled runs use --upcoming" if state == "scheduled" else ""
            fail(f"--state must be one of {', '.join(HISTORY_STATES)}, not {state!r}{hint}")
        if upcoming and (state or failed):
            fail("--upcoming lists scheduled runs only; leave out --state and --failed")
        states = ["failed", "dead"] if failed else ([state] if state else None)
        task_id = s.task_id(task) if task else None
        with s.db.tx() as conn:
            if upcoming:
                page = store_runs.list_upcoming(conn, task_id=task_id, limit=limit)
            else:
                page = store_runs.list_page(conn, task_id=task_id, states=states, limit=limit)
        if as_json:
            emit_json(page.items)
            return
        if not page.items and upcoming:
            # A newcomer's daily task shows nothing here: say how far ahead the scheduler writes.
            typer.echo(
                f"nothing scheduled in the next {s.settings.scheduler_horizon_s / 60:g} minutes (the "
                "scheduler writes runs that far ahead); `ordo task show TASK` lists a task's next occurrences"
            )
        elif not page.items:
            typer.echo("no runs")
        for run in page.items:
            run_line(run)


class _RunGroup(TyperGroup):
    """`ordo run 42` means `ordo run show 42`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0].isdigit():
            args = ["show", *args]
        return super().resolve_command(ctx, args)


run_app = typer.Typer(
    cls=_RunGroup,
    help="Show, cancel or retry one run (`ordo run RUN` shows it).",
    no_args_is_help=True,
)


@run_app.command("show")
def run_show(run: RunRef, as_json: JsonFlag = False) -> None:
    """Show one run: every attempt, every step with its output or error."""
    with session() as s:
        with s.db.tx() as conn:
            shown = store_runs.get(conn, run)
        print_run(shown, as_json)


@run_app.command("cancel")
def run_cancel(run: RunRef, as_json: JsonFlag = False) -> None:
    """Cancel a run: a scheduled or waiting one is withdrawn now; a running one stops at its next step."""
    shown = _change(run, store_runs.cancel)
    if as_json:
        emit_json(shown)
    elif shown["state"] == "running":
        typer.echo(f"run {run} will stop at its next step boundary")
    else:
        typer.echo(f"run {run} is {shown['state']}")


@run_app.command("retry")
def run_retry(run: RunRef, as_json: JsonFlag = False) -> None:
    """Retry a failed run now, or give a dead run one more attempt (same run id)."""
    shown = _change(run, store_runs.retry)
    if as_json:
        emit_json(shown)
    else:
        typer.echo(f"run {run} is due now for attempt {shown['attempt'] + 1}")


def _change(run: int, change: Callable[[Connection, int], dict[str, Any]]) -> dict[str, Any]:
    with session() as s, s.db.tx() as conn:
        return change(conn, run)
