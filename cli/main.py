"""`ordo`: the command line and the composition root (the only module that wires api/, scheduler/
and workers/ together)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
import yaml

from cli import runtime
from cli.output import emit_json, table
from cli.plant import availability_app, resources_app
from cli.runtime import fail, guarded, load_settings, open_database
from cli.solve import solve_command
from cli.status import status_command
from cli.tokens import token_app
from cli.webhooks import deliverer_config, webhook_app
from engine import ToolContext, ToolLimits, ToolRegistry, call_tool
from store import runs as store_runs
from store import tasks as store_tasks
from store.errors import InvalidTask
from store.settings import Settings

app = typer.Typer(
    name="ordo",
    help="Ordo: PostgreSQL-native job orchestrator. Calendars, declarative pipelines, planning tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
task_app = typer.Typer(help="Add, list, pause, resume, cancel and trigger tasks.", no_args_is_help=True)
tool_app = typer.Typer(help="List the tool catalog and try a tool.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(tool_app, name="tool")
app.add_typer(token_app, name="token")
app.add_typer(resources_app, name="resources")
app.add_typer(availability_app, name="availability")
app.command("status")(status_command)
app.add_typer(webhook_app, name="webhook")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        help="Serve /metrics, /health and /health/ready on this port (one per process; 0: off).",
        envvar="ORDO_METRICS_PORT",
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _registry(settings: Settings) -> ToolRegistry:
    return ToolRegistry.load(settings.tool_catalogs)


def _limits(settings: Settings) -> ToolLimits:
    from engine.outbound import OutboundPolicy

    return ToolLimits(
        http_max_response_bytes=settings.http_max_response_bytes,
        step_output_max_bytes=settings.step_output_max_bytes,
        outbound=OutboundPolicy.parse(settings.outbound_allow),
    )


# -- services -------------------------------------------------------------------------------------


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port.", envvar="ORDO_API_PORT")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Runs the worker executes at once.", envvar="ORDO_WORKER_CONCURRENCY")
    ] = None,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the HTTP API.")] = True,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Load the flagship (a plant, work orders, a nightly plan) and run it once."
        ),
    ] = False,
) -> None:
    """Bring Ordo up: database (embedded unless DATABASE_URL), migrations, scheduler, worker, API."""
    from cli.supervisor import ChildSpec, supervise

    with guarded():
        settings = load_settings(api_port=port, worker_concurrency=concurrency)
        runtime.service_logging(settings)
        log = structlog.get_logger().bind(process="up")
        url = runtime.database_url(settings)
        db = open_database(settings.with_overrides(database_url=url), application_name="ordo-up")
        if api:
            from api.bootstrap import ensure_admin_token

            token = ensure_admin_token(db)
            if token:
                sys.stderr.write(
                    "\nFirst start: an admin API token was created. It is shown only this once:\n\n"
                    f"    {token}\n\nUse it as 'Authorization: Bearer <token>', or paste it into the web "
                    f"console at http://{settings.api_host}:{settings.api_port}/ui\n\n"
                )
                sys.stderr.flush()
        shown = None
        if demo:
            from cli.demo import prepare

            shown = prepare(db, settings, _registry(settings))
        db.dispose()
        env = {**os.environ, "DATABASE_URL": url}
        children = [
            ChildSpec("scheduler", ["scheduler"]),
            ChildSpec("worker", ["worker", "--concurrency", str(settings.worker_concurrency)]),
        ]
        if settings.metrics_port:
            # One port per process (ops/README.md, "Metrics"): the scheduler's, then the worker's.
            children[0].args += ["--metrics-port", str(settings.metrics_port)]
            children[1].args += ["--metrics-port", str(settings.metrics_port + 1)]
        if shown is not None:  # the receiver first, so the plan's webhook finds it listening
            env.update(ORDO_OUTBOUND_ALLOW=shown.outbound_allow, ORDO_WEBHOOK_RECEIVER_SECRET=shown.secret)
            receive = [
                "webhook",
                "receive",
                "--port",
                str(shown.receiver_port),
                "--record",
                str(shown.record),
            ]
            children.insert(0, ChildSpec("receiver", receive))
            sys.stderr.write(shown.explain())
            sys.stderr.flush()
        if api:
            children.append(ChildSpec("api", ["api", "--port", str(settings.api_port)]))
        log.info(
            "ordo_up",
            database="embedded" if settings.embedded else "external",
            data_dir=str(settings.data_dir) if settings.embedded else None,
            api=f"http://{settings.api_host}:{settings.api_port}" if api else None,
            console=f"http://{settings.api_host}:{settings.api_port}/ui" if api else None,
        )
        stop = runtime.stop_on_signals()
        code = supervise(children, env, stop, log, settings.shutdown_grace_s)
        log.info("ordo_down")
        raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from store.db import Database
    from store.migrate import migrate as apply

    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        applied = apply(Database(runtime.database_url(settings)))
        typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@app.command()
def scheduler(
    tick_s: Annotated[
        float | None, typer.Option(help="Tick interval.", envvar="ORDO_SCHEDULER_TICK_S")
    ] = None,
    horizon_s: Annotated[
        float | None, typer.Option(help="How far ahead to expand.", envvar="ORDO_SCHEDULER_HORIZON_S")
    ] = None,
    metrics_port: MetricsPort = None,
) -> None:
    """Run the scheduler (one leader at a time; others stand by)."""
    import socket

    from observability.metrics import SCHEDULER
    from scheduler.service import SchedulerConfig, SchedulerService

    with guarded():
        settings = load_settings(
            scheduler_tick_s=tick_s, scheduler_horizon_s=horizon_s, metrics_port=metrics_port
        )
        runtime.service_logging(settings)
        db = open_database(settings, application_name="ordo-scheduler", pool_size=2)
        _serve_probes(settings, SCHEDULER, db)
        cfg = SchedulerConfig(
            tick_s=settings.scheduler_tick_s,
            horizon_s=settings.scheduler_horizon_s,
            standby_retry_s=settings.scheduler_standby_retry_s,
            retention_days=settings.run_retention_days,
        )
        service = SchedulerService(db, cfg, structlog.get_logger(), f"{socket.gethostname()}:{os.getpid()}")
        runtime.freeze_startup_heap()
        service.run(runtime.stop_on_signals())


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Runs executed at once.", envvar="ORDO_WORKER_CONCURRENCY")
    ] = None,
    lease_s: Annotated[
        float | None, typer.Option(help="Lease length in seconds.", envvar="ORDO_LEASE_S")
    ] = None,
    shutdown_grace_s: Annotated[
        float | None, typer.Option(help="Grace period on SIGTERM.", envvar="ORDO_SHUTDOWN_GRACE_S")
    ] = None,
    metrics_port: MetricsPort = None,
) -> None:
    """Run a worker: lease due runs and execute their pipelines."""
    from observability.metrics import WORKER, WORKER_SLOTS
    from workers.worker import Worker, WorkerConfig

    with guarded():
        settings = load_settings(
            worker_concurrency=concurrency,
            lease_s=lease_s,
            shutdown_grace_s=shutdown_grace_s,
            metrics_port=metrics_port,
        )
        runtime.service_logging(settings)
        db = open_database(settings, application_name="ordo-worker", pool_size=4)
        WORKER_SLOTS.set(settings.worker_concurrency)
        cfg = WorkerConfig(
            concurrency=settings.worker_concurrency,
            lease_s=settings.lease_s,
            poll_s=settings.poll_s,
            shutdown_grace_s=settings.shutdown_grace_s,
            rescue_interval_s=settings.rescue_interval_s,
            deliveries=deliverer_config(settings),
        )
        w = Worker(db, _registry(settings), cfg, log=structlog.get_logger(), limits=_limits(settings))

        def loops() -> tuple[bool, dict[str, Any]]:
            report = w.health.report()
            return all(loop["ok"] for loop in report.values()), {"loops": report}

        _serve_probes(settings, WORKER, db, loops)
        runtime.freeze_startup_heap()
        w.run(runtime.stop_on_signals())


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="API port.", envvar="ORDO_API_PORT")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind.", envvar="ORDO_API_HOST")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes.", envvar="ORDO_API_WORKERS")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    from api.server import serve

    with guarded():
        settings = load_settings(api_port=port, api_host=host, api_workers=workers)
        runtime.service_logging(settings)
        url = runtime.database_url(settings)
        open_database(settings.with_overrides(database_url=url), application_name="ordo-api").dispose()
        serve(settings.with_overrides(database_url=url))


def _serve_probes(settings: Settings, registry: Any, db: Any, loops: Any = None) -> None:
    """/metrics, /health and /health/ready of a worker or scheduler, when it has a metrics port.
    Live: a worker's background loops (heartbeat, rescuer, listener, completer) pass. Ready: that,
    and the database answers."""
    if settings.metrics_port:
        from observability.health import serve_probes
        from store import status

        def live() -> tuple[bool, dict[str, Any]]:
            return loops() if loops is not None else (True, {})

        def ready() -> tuple[bool, dict[str, Any]]:
            with db.tx() as conn:
                status.ping(conn)
            ok, details = live()
            return ok, {"database": "reachable", **details}

        serve_probes(settings.metrics_host, settings.metrics_port, registry, live=live, ready=ready)


# -- tasks ----------------------------------------------------------------------------------------


def _read_document(path: str) -> Any:
    try:
        source = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    try:
        return yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        fail(f"{path} is not valid YAML or JSON{where}: {getattr(e, 'problem', e)}")


@task_app.command("add")
def task_add(
    file: Annotated[str, typer.Argument(help="Task document (YAML or JSON); '-' reads stdin.")],
    as_json: JsonFlag = False,
) -> None:
    """Add a task. It is checked completely first; nothing is stored if anything is wrong."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        doc = _read_document(file)
        docs = doc if isinstance(doc, list) else [doc]
        if not docs:
            raise InvalidTask(f"{file} holds no task")
        registry = _registry(settings)
        now = _now()
        validated = []
        for i, d in enumerate(docs):
            try:
                validated.append(store_tasks.validate_task(d, registry, now=now))
            except InvalidTask as e:
                raise type(e)(
                    f"task {i + 1}: {e.message}" if len(docs) > 1 else e.message, details=e.details
                ) from None
        db = open_database(settings)
        with db.tx() as conn:
            rows = [store_tasks.create(conn, v, store_tasks.LOCAL_AGENT_ID) for v in validated]
        if as_json:
            emit_json(
                [store_tasks.public(r) for r in rows]
                if isinstance(doc, list)
                else store_tasks.public(rows[0])
            )
            return
        for row in rows:
            nxt = row["next_fire_at"]
            when = f", next run {nxt.astimezone(_zone(row['timezone'])).isoformat()}" if nxt else ""
            typer.echo(f"task {row['id']} added: {row['title']} ({row['schedule_kind']}{when})")


def _zone(name: str) -> Any:
    from scheduler.expand import zone

    return zone(name)


@task_app.command("list")
def task_list(
    status: Annotated[str | None, typer.Option(help="active, paused or canceled.")] = None,
    kind: Annotated[str | None, typer.Option(help="cron, rrule, once, event or manual.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, newest first."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        db = open_database(settings)
        with db.tx() as conn:
            page = store_tasks.list_page(conn, status=status, schedule_kind=kind, limit=limit)
        items = [store_tasks.public(r) for r in page.items]
        if as_json:
            emit_json(items)
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
                for t in items
            ],
            ["id", "title", "status", "kind", "schedule", "timezone", "next_fire_at"],
            empty="no tasks",
        )


@task_app.command("show")
def task_show(task_id: str, as_json: JsonFlag = False) -> None:
    """Show one task."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        with open_database(settings).tx() as conn:
            task = store_tasks.public(store_tasks.get(conn, task_id))
        if as_json:
            emit_json(task)
        else:
            typer.echo(yaml.safe_dump(task, sort_keys=False, allow_unicode=True).rstrip())


def _set_status(task_id: str, action: str, as_json: bool) -> None:
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        with open_database(settings).tx() as conn:
            if action == "pause":
                row = store_tasks.pause(conn, task_id)
            elif action == "resume":
                row = store_tasks.resume(conn, task_id, now=_now())
            else:
                row = store_tasks.cancel(conn, task_id)
        if as_json:
            emit_json(store_tasks.public(row))
        else:
            typer.echo(f"task {row['id']} is {row['status']}")


@task_app.command("pause")
def task_pause(task_id: str, as_json: JsonFlag = False) -> None:
    """Pause: stop scheduling and withdraw queued occurrences; running runs finish."""
    _set_status(task_id, "pause", as_json)


@task_app.command("resume")
def task_resume(task_id: str, as_json: JsonFlag = False) -> None:
    """Resume from now; occurrences missed while paused do not run."""
    _set_status(task_id, "resume", as_json)


@task_app.command("cancel")
def task_cancel(task_id: str, as_json: JsonFlag = False) -> None:
    """Cancel for good: nothing more is scheduled; waiting runs are canceled, running ones stop."""
    _set_status(task_id, "cancel", as_json)


@task_app.command("run")
def task_run(
    task_id: str,
    params: Annotated[str | None, typer.Option(help="JSON object merged over the task's params.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish and show it.")] = False,
    timeout_s: Annotated[float, typer.Option(help="How long --wait waits.")] = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Run a task now (needs a worker: `ordo up` or `ordo worker`)."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        try:
            overrides = json.loads(params) if params else None
        except ValueError as e:
            fail(f"--params is not valid JSON: {e}")
        db = open_database(settings)
        with db.tx() as conn:
            (run_id,) = store_runs.enqueue(conn, task_id, params=overrides)
        if not wait:
            if as_json:
                emit_json({"run_id": run_id})
            else:
                typer.echo(f"run {run_id} queued")
            return
        deadline = time.monotonic() + timeout_s
        while True:
            with db.tx() as conn:
                run = store_runs.get(conn, run_id)
            if run["state"] in ("succeeded", "dead", "canceled", "skipped") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        _print_run(run, as_json)
        if run["state"] not in ("succeeded",):
            raise typer.Exit(1)


# -- runs -----------------------------------------------------------------------------------------


@app.command()
def runs(
    task: Annotated[str | None, typer.Option("--task", help="Only this task's runs.")] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed (awaiting retry) and dead runs.")
    ] = False,
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Run history, newest first, with every step's state, timing and output."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        states = ["failed", "dead"] if failed else ([state] if state else None)
        if state and state not in store_runs.RUN_STATES:
            fail(f"--state must be one of {', '.join(store_runs.RUN_STATES)}")
        with open_database(settings).tx() as conn:
            page = store_runs.list_page(conn, task_id=task, states=states, limit=limit)
        if as_json:
            emit_json(page.items)
            return
        if not page.items:
            typer.echo("no runs")
        for run in page.items:
            _print_run_line(run)


@app.command("run")
def run_show(run_id: str, as_json: JsonFlag = False) -> None:
    """Show one run: every attempt, every step with its output or error."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        with open_database(settings).tx() as conn:
            run = store_runs.get(conn, run_id)
        _print_run(run, as_json)


def _print_run_line(run: dict[str, Any]) -> None:
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


def _print_run(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(run)
        return
    _print_run_line(run)
    for attempt in run.get("attempts", [])[:-1]:
        error = attempt["error"] or {}
        typer.echo(
            f"  earlier attempt {attempt['attempt']}: {attempt['state']} "
            f"{error.get('code', '')} {error.get('message', '')}"
        )


# -- schedules and tools --------------------------------------------------------------------------


@app.command()
def preview(
    rrule: Annotated[str | None, typer.Option(help="RRULE value or a whole RFC 5545 block.")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron line (5 fields).")] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone.")] = "UTC",
    dtstart: Annotated[str | None, typer.Option(help="ISO 8601 DTSTART (RRULE) / lower bound.")] = None,
    after: Annotated[
        str | None, typer.Option(help="List occurrences at or after this ISO 8601 instant.")
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=10000, help="How many occurrences.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Print the next occurrences of a schedule, one ISO 8601 timestamp with offset per line."""
    from scheduler.expand import preview as expand_preview

    with guarded():
        if (rrule is None) == (cron is None):
            fail("give exactly one of --rrule or --cron")
        kind, expr = ("rrule", rrule) if rrule is not None else ("cron", cron)
        occurrences = expand_preview(
            kind,
            expr or "",
            tz,
            count=count,
            now=_now(),
            dtstart=_parse_iso(dtstart, "--dtstart", tz),
            after=_parse_iso(after, "--after", tz),
        )
        lines = [o.isoformat() for o in occurrences]
        if as_json:
            emit_json(lines)
        else:
            for line in lines:
                typer.echo(line)


def _parse_iso(value: str | None, option: str, tz: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be an ISO 8601 date-time such as 2026-03-29T08:00:00+03:00, not {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(tz))
    return parsed


@tool_app.command("list")
def tool_list(as_json: JsonFlag = False) -> None:
    """The tool catalog: addresses, what each does, the scopes it needs."""
    with guarded():
        registry = _registry(load_settings())
        if as_json:
            emit_json([registry[a].describe() for a in registry])
            return
        table(
            [
                (
                    a,
                    registry[a].runs["kind"],
                    f"{registry[a].timeout_s:g}s",
                    ",".join(registry[a].scopes) or "-",
                    registry[a].description,
                )
                for a in registry
            ],
            ["address", "runs", "timeout", "scopes", "description"],
        )


@tool_app.command("show")
def tool_show(address: str) -> None:
    """One tool with its input and output JSON Schemas."""
    with guarded():
        emit_json(_registry(load_settings()).require(address).describe())


@tool_app.command("run")
def tool_run(
    address: str,
    input_file: Annotated[str, typer.Option("--input", help="Input as JSON or YAML; '-' reads stdin.")],
) -> None:
    """Run one tool in-process with the same validation as a pipeline step; print its JSON output."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        tool = _registry(settings).require(address)
        arguments = _read_document(input_file)
        ctx = ToolContext.standalone(_now(), tool.timeout_s, _limits(settings))
        emit_json(call_tool(tool, arguments, ctx))


app.command("solve", help="Solve a job-shop instance (standard text format or Ordo JSON).")(solve_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
