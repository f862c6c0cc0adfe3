"""`ordo task ...`: add, list, show, edit, delete, pause, resume, cancel and run tasks, as the API does
(the same validation, the same JSON). Tasks added here belong to the local operator; these commands
see every agent's tasks, as an admin token does."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from sqlalchemy import Connection

from cli import documents
from cli.output import JsonFlag, TaskRef, emit_json, emit_yaml, print_run, table
from cli.runtime import EXIT_FAILED, EXIT_STILL_WAITING, fail
from cli.session import Session, session
from scheduler import task_document
from scheduler.expand import ScheduleTooCostly, preview_within_budget
from store import runs as store_runs
from store import status as store_status
from store import tasks as store_tasks
from store.domain import ENDED_STATES, SCHEDULE_KINDS, TASK_STATUSES
from store.errors import InvalidBatch, OrdoError

__all__ = ["task_app"]

task_app = typer.Typer(
    help="Add, list, show, edit, delete, pause, resume, cancel and run tasks.", no_args_is_help=True
)

NEXT_SHOWN = 5  # occurrences `ordo task show` lists
_ADDED_SHOWN = 100  # `ordo task add` lists the tasks it added up to this many, else counts them
_ERRORS_SHOWN = 20  # invalid documents `ordo task add` names one by one


@task_app.command("add")
def task_add(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="Task document, a list of them, or a YAML stream of them (YAML or JSON); '-' reads stdin.",
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Add tasks from a file. All are checked first; nothing is stored if anything is wrong."""
    with session() as s:
        docs, listed = documents.read_many(file, max_bytes=s.settings.api_max_body_bytes)
        try:
            validated = task_document.validate_many(docs, s.registry, now=s.now)
        except InvalidBatch as e:
            if not listed:
                fail(e.details["errors"][0]["message"])
            _print_invalid(e.details["errors"])
            fail(f"{e.details['invalid']} of {len(docs)} tasks are invalid; nothing was stored")
        with s.db.tx() as conn:
            ids = store_tasks.create_many(conn, validated, store_tasks.LOCAL_AGENT_ID)
        if len(ids) > _ADDED_SHOWN and not as_json:
            typer.echo(f"{len(ids)} tasks added (ordo task list shows them)")
            return
        with s.db.tx() as conn:
            rows = store_tasks.get_many(conn, ids)
        tasks = [task_document.public(r, now=s.now) for r in rows]
        if as_json:
            emit_json(tasks if listed else tasks[0])
            return
        for task in tasks:
            nxt = f", next run {task['next_fire_at']}" if task["next_fire_at"] else ""
            typer.echo(f"task {task['id']} added: {task['title']} ({task['schedule_kind']}{nxt})")


def _print_invalid(errors: list[dict[str, Any]]) -> None:
    for error in errors[:_ERRORS_SHOWN]:
        typer.echo(f"task {error['index'] + 1}: {error['message']}", err=True)
    if len(errors) > _ERRORS_SHOWN:
        typer.echo(f"... and {len(errors) - _ERRORS_SHOWN} more", err=True)


@task_app.command("list")
def task_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only tasks in this status: {', '.join(TASK_STATUSES)}.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help=f"Only this schedule kind: {', '.join(SCHEDULE_KINDS)}.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, newest first, with each one's next run."""
    with session() as s:
        _check_choice("--status", status, TASK_STATUSES)
        _check_choice("--kind", kind, SCHEDULE_KINDS)
        with s.db.tx() as conn:
            page = store_tasks.list_page(conn, status=status, schedule_kind=kind, limit=limit)
        tasks = [task_document.public(r, now=s.now) for r in page.items]
        if as_json:
            emit_json(tasks)
            return
        table(
            [
                (
                    t["id"],
                    t["title"],
                    t["status"],
                    t["schedule_kind"],
                    t["schedule_expr"].replace("\n", " "),
                    t["timezone"],
                    t["next_fire_at"],
                )
                for t in tasks
            ],
            ["id", "title", "status", "kind", "schedule", "timezone", "next_fire_at"],
            empty="no tasks",
        )


@task_app.command("show")
def task_show(task: TaskRef, as_json: JsonFlag = False) -> None:
    """Show one task, with its next five occurrences in its own zone."""
    with session() as s:
        task_id = s.task_id(task)
        with s.db.tx() as conn:
            row = store_tasks.get(conn, task_id)
        shown = task_document.public(row, now=s.now)
        upcoming: list[datetime] = []
        cut_short: OrdoError | None = None
        if row["status"] == "active":
            try:
                result = preview_within_budget(
                    row["schedule_kind"], row["schedule_expr"], row["timezone"], count=NEXT_SHOWN, now=s.now
                )
                upcoming, cut_short = result.occurrences, result.cut_short
            except ScheduleTooCostly as e:  # the task is still shown, with why its occurrences are not
                cut_short = e
        shown["next_occurrences"] = [o.isoformat() for o in upcoming]
        if as_json:
            emit_json(shown)
            return
        emit_yaml(shown)
        if row["status"] != "active":
            typer.echo(f"# {row['status']}: nothing is scheduled until it is resumed")
        if cut_short is not None:
            typer.echo(f"# next_occurrences incomplete ({cut_short.code}): {cut_short.message}")


@task_app.command("edit")
def task_edit(
    task: TaskRef,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="The fields to change (YAML or JSON; '-' reads stdin). `payload` is replaced, "
            "`backoff` merged; the whole task is checked again.",
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Change fields of a task, as PATCH /tasks/{id} does. A changed schedule is planned afresh from now."""
    with session() as s:
        patch = documents.read(file, max_bytes=s.settings.api_max_body_bytes)
        if not isinstance(patch, dict):
            fail(f"{file} must hold an object of task fields, e.g. 'priority: 7'")
        task_id = s.task_id(task)
        with s.db.tx() as conn:
            row = task_document.edit(conn, task_id, patch, s.registry, now=s.now)
        _print_task(s, row, as_json, "changed")


@task_app.command("delete")
def task_delete(task: TaskRef, as_json: JsonFlag = False) -> None:
    """Delete a task with its runs and their history (DELETE /tasks/{id}). To keep the history, cancel it."""
    with session() as s:
        task_id = s.task_id(task)
        with s.db.tx() as conn:
            store_tasks.delete(conn, task_id)
        if as_json:
            emit_json({"id": str(task_id), "deleted": True})
        else:
            typer.echo(f"task {task_id} deleted, with its runs")


@task_app.command("pause")
def task_pause(task: TaskRef, as_json: JsonFlag = False) -> None:
    """Pause: stop scheduling and withdraw queued occurrences; running runs finish."""
    _change_status(task, as_json, lambda conn, task_id, _: store_tasks.pause(conn, task_id))


@task_app.command("resume")
def task_resume(task: TaskRef, as_json: JsonFlag = False) -> None:
    """Resume from now; occurrences missed while paused do not run."""
    _change_status(task, as_json, lambda conn, task_id, now: store_tasks.resume(conn, task_id, now=now))


@task_app.command("cancel")
def task_cancel(task: TaskRef, as_json: JsonFlag = False) -> None:
    """Cancel for good: nothing more is scheduled; waiting runs are canceled, running ones stop."""
    _change_status(task, as_json, lambda conn, task_id, _: store_tasks.cancel(conn, task_id))


def _change_status(
    task: str, as_json: bool, change: Callable[[Connection, UUID, datetime], dict[str, Any]]
) -> None:
    with session() as s:
        task_id = s.task_id(task)
        with s.db.tx() as conn:
            row = change(conn, task_id, s.now)
        _print_task(s, row, as_json)


def _print_task(s: Session, row: dict[str, Any], as_json: bool, verb: str | None = None) -> None:
    task = task_document.public(row, now=s.now)
    if as_json:
        emit_json(task)
        return
    nxt = f", next run {task['next_fire_at']}" if task["next_fire_at"] else ""
    typer.echo(f"task {task['id']} {verb or 'is ' + task['status']}{nxt}")


@task_app.command("run")
def task_run(
    task: TaskRef,
    params: Annotated[
        str | None, typer.Option(help="A JSON object merged over the task's params for this run.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end and show it.")] = False,
    timeout_s: Annotated[float, typer.Option(min=0, help="How long --wait waits, in seconds.")] = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Run a task now. A worker runs it (`ordo up`, or `ordo worker`). Exit code with --wait: 0 it
    succeeded, 1 it ended otherwise, 3 it has not ended within --timeout-s (the reason is said)."""
    with session() as s:
        overrides = documents.loads_json(params, "--params") if params else None
        if overrides is not None and not isinstance(overrides, dict):
            fail('--params must be a JSON object, e.g. \'{"day": "2026-03-29"}\'')
        task_id = s.task_id(task)
        with s.db.tx() as conn:
            (run_id,) = store_runs.enqueue(conn, task_id, params=overrides)
            run = store_runs.get(conn, run_id)
        if not wait:
            run.pop("attempts")
            if as_json:
                emit_json(run)
            else:
                typer.echo(f"run {run_id} queued; `ordo run {run_id}` shows it")
            return
        run = _wait(s, run_id, timeout_s)
        print_run(run, as_json)
        if run["state"] not in ENDED_STATES:
            fail(
                f"run {run_id} has not ended after {timeout_s:g} s: {_why_waiting(s, run)}",
                EXIT_STILL_WAITING,
            )
        if run["state"] != "succeeded":
            raise typer.Exit(EXIT_FAILED)


def _wait(s: Session, run_id: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with s.db.tx() as conn:
            run = store_runs.get(conn, run_id)
        if run["state"] in ENDED_STATES or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def _why_waiting(s: Session, run: dict[str, Any]) -> str:
    """Why a run has not ended: what a person would look at next."""
    with s.db.tx() as conn:
        live = store_status.system(conn, store_status.Freshness.from_settings(s.settings))
    later = f"; `ordo run {run['id']}` shows it later"
    if run["state"] == "running":
        return f"it is still running (attempt {run['attempt']} on worker {run['worker_id']}){later}"
    if live.workers_alive == 0:
        last = "never" if live.worker_age_s is None else f"{live.worker_age_s:.0f} s ago"
        return (
            f"it is still {run['state']} and no worker is running (last heartbeat: {last}); "
            "start one with `ordo up` or `ordo worker`"
        )
    if run["state"] == "failed":
        return f"attempt {run['attempt']} failed and the next one is due at {run['run_at']}{later}"
    return (
        f"it is still queued: {live.workers_alive} worker(s) with {live.worker_slots} slot(s) are busy "
        f"with other runs, or its concurrency key is at its limit{later}"
    )


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        fail(f"{option} must be one of {', '.join(choices)}, not {value!r}")
