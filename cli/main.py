"""`ordo`: the command line and the composition root (the only module that wires api/, scheduler/
and workers/ together). The services are here; each group of one-shot commands has its module
(cli/tasks.py, runs.py, events.py, tokens.py, tools.py, solve.py) and one registration line below.

Exit codes, for every command: 0 done; 1 what was asked did not succeed (a run failed, the database
is unreachable); 2 bad input (usage, an invalid document, an unknown id, a refused change); 3
`--wait` gave up before the run ended; 70 an internal error; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Any

import structlog
import typer

from cli import datadir, runtime
from cli.events import event_app
from cli.plant import availability_app, resources_app
from cli.runs import run_app, runs_command
from cli.runtime import guarded, load_settings, open_database
from cli.session import tool_limits
from cli.solve import solve_command
from cli.status import status_command
from cli.tasks import task_app
from cli.tokens import token_app
from cli.tools import preview_command, tool_app
from cli.webhooks import deliverer_config, webhook_app
from engine import ToolRegistry
from store.settings import Settings

app = typer.Typer(
    name="ordo",
    help="Ordo: PostgreSQL-native job orchestrator. Calendars, declarative pipelines, planning tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: flags read as flags, and every default is shown.
    rich_markup_mode=None,
)


# -- services -------------------------------------------------------------------------------------

# Options with an ORDO_* fallback; their defaults are the settings' own.
ApiPort = Annotated[int, typer.Option("--port", help="API port.", envvar="ORDO_API_PORT")]
MetricsPort = Annotated[
    int,
    typer.Option(
        help="Serve /metrics, /health and /health/ready on this port (one per process; 0: off).",
        envvar="ORDO_METRICS_PORT",
    ),
]
Concurrency = Annotated[
    int,
    typer.Option("--concurrency", help="Runs a worker executes at once.", envvar="ORDO_WORKER_CONCURRENCY"),
]


@app.command()
def up(
    port: ApiPort = Settings.api_port,
    concurrency: Concurrency = Settings.worker_concurrency,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the HTTP API.")] = True,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Load the flagship (a plant, work orders, a nightly plan) and run it once."
        ),
    ] = False,
) -> None:
    """Bring Ordo up: database (embedded unless DATABASE_URL), migrations, scheduler, worker, API.
    One `ordo up` per data directory and per port."""
    from api.server import ensure_port_free
    from cli.supervisor import ChildSpec, supervise

    with guarded():
        settings = load_settings(api_port=port, worker_concurrency=concurrency)
        runtime.service_logging(settings)
        log = structlog.get_logger().bind(process="up")
        claim = datadir.claim(settings.data_dir) if settings.embedded else contextlib.nullcontext()
        # The directory first: a second `ordo up` in the same clone is told that one already serves
        # it, not that its port is taken (which would send it looking for another port).
        with claim:
            if api:
                ensure_port_free(settings.api_host, settings.api_port)
            url = runtime.database_url(settings)
            runtime.supervise_embedded(settings)
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

                shown = prepare(db, settings, ToolRegistry.load(settings.tool_catalogs))
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
                env.update(
                    ORDO_OUTBOUND_ALLOW=shown.outbound_allow, ORDO_WEBHOOK_RECEIVER_SECRET=shown.secret
                )
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
        float,
        typer.Option(
            help="Tick interval, seconds.",
            envvar="ORDO_SCHEDULER_TICK_S",
        ),
    ] = Settings.scheduler_tick_s,
    horizon_s: Annotated[
        float,
        typer.Option(
            help="How far ahead to write occurrences, seconds.",
            envvar="ORDO_SCHEDULER_HORIZON_S",
        ),
    ] = Settings.scheduler_horizon_s,
    metrics_port: MetricsPort = Settings.metrics_port,
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
        db = open_database(settings, application_name="ordo-scheduler", pool_size=2, service=True)
        _serve_probes(settings, SCHEDULER, db)
        cfg = SchedulerConfig(
            tick_s=settings.scheduler_tick_s,
            horizon_s=settings.scheduler_horizon_s,
            standby_retry_s=settings.scheduler_standby_retry_s,
            retention_days=settings.run_retention_days,
            availability_history_days=settings.availability_history_days,
        )
        service = SchedulerService(db, cfg, structlog.get_logger(), f"{socket.gethostname()}:{os.getpid()}")
        runtime.freeze_startup_heap()
        service.run(runtime.stop_on_signals())


@app.command()
def worker(
    concurrency: Concurrency = Settings.worker_concurrency,
    lease_s: Annotated[
        float,
        typer.Option(help="Lease length, seconds.", envvar="ORDO_LEASE_S"),
    ] = Settings.lease_s,
    shutdown_grace_s: Annotated[
        float,
        typer.Option(
            help="Grace period on SIGTERM, seconds.",
            envvar="ORDO_SHUTDOWN_GRACE_S",
        ),
    ] = Settings.shutdown_grace_s,
    metrics_port: MetricsPort = Settings.metrics_port,
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
        db = open_database(settings, application_name="ordo-worker", pool_size=4, service=True)
        WORKER_SLOTS.set(settings.worker_concurrency)
        cfg = WorkerConfig(
            concurrency=settings.worker_concurrency,
            lease_s=settings.lease_s,
            poll_s=settings.poll_s,
            shutdown_grace_s=settings.shutdown_grace_s,
            rescue_interval_s=settings.rescue_interval_s,
            deliveries=deliverer_config(settings),
        )
        registry = ToolRegistry.load(settings.tool_catalogs)
        w = Worker(db, registry, cfg, log=structlog.get_logger(), limits=tool_limits(settings))

        def loops() -> tuple[bool, dict[str, Any]]:
            report = w.health.report()
            return all(loop["ok"] for loop in report.values()), {"loops": report}

        _serve_probes(settings, WORKER, db, loops)
        runtime.freeze_startup_heap()
        w.run(runtime.stop_on_signals())


@app.command()
def api(
    port: ApiPort = Settings.api_port,
    host: Annotated[
        str,
        typer.Option(help="Interface to bind.", envvar="ORDO_API_HOST"),
    ] = Settings.api_host,
    workers: Annotated[
        int,
        typer.Option(help="Server processes.", envvar="ORDO_API_WORKERS"),
    ] = Settings.api_workers,
) -> None:
    """Serve the HTTP API (docs at /docs and /redoc). Several may serve one database, each on its port."""
    from api.server import serve

    with guarded():
        settings = load_settings(api_port=port, api_host=host, api_workers=workers)
        runtime.service_logging(settings)
        url = runtime.database_url(settings)
        runtime.supervise_embedded(settings)
        open_database(settings.with_overrides(database_url=url), application_name="ordo-api").dispose()
        serve(settings.with_overrides(database_url=url))


def _serve_probes(settings: Settings, registry: Any, db: Any, loops: Any = None) -> None:
    """/metrics, /health and /health/ready of a worker or scheduler, when it has a metrics port.
    Live: a worker's background loops (heartbeat, rescuer, listener, completer, deliverer, event_loop)
    pass. Ready: that, and the database answers."""
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


# -- one-shot commands, a module per group; defaults of the options above are the settings' ----------

app.add_typer(task_app, name="task")
app.command("runs")(runs_command)
app.add_typer(run_app, name="run")
app.add_typer(event_app, name="event")
app.add_typer(token_app, name="token")
app.add_typer(tool_app, name="tool")
app.add_typer(resources_app, name="resources")
app.add_typer(availability_app, name="availability")
app.add_typer(webhook_app, name="webhook")
app.command("status")(status_command)
app.command("preview")(preview_command)
app.command("solve", help="Solve a job-shop instance (standard text format or Ordo JSON).")(solve_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
