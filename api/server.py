"""`ordo api`: the app under uvicorn with production settings (httptools, uvloop, no access log, no
reload), in one or more server processes.

With several processes, each listens on its own SO_REUSEPORT socket and the kernel spreads new
connections evenly among them. With one shared socket (uvicorn's own multi-process mode) the first
process to wake accepts a whole burst of new connections, so keep-alive clients that connect
together all land on one process and leave the others idle.

A scrape of /metrics reaches one of the processes, so they keep their figures in a directory of
their own (prometheus-client's multiprocess mode) and each serves the sum: created fresh for this
`ordo api`, named to the processes through PROMETHEUS_MULTIPROC_DIR before they start (the library
picks its storage on import), a dead process's files kept (its counts stay in the sums, so counters
never go back) and the directory removed when the API stops, or, when its supervisor was killed
outright, by the next `ordo api` on the machine. Each process also keeps its memory and CPU there
(api.metrics.keep_process_figures), so the API exports `ordo_process_*` like workers and schedulers."""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import psutil
import structlog
import uvicorn
from prometheus_client import multiprocess

from api.app import create_app
from observability.logging import configure
from store.errors import ConfigError
from store.settings import Settings

__all__ = ["ensure_port_free", "serve", "uvicorn_config"]

_RESTART_EVERY_S = 1.0  # at most one restart per process slot per second
_METRICS_DIR_PREFIX = "ordo-api-metrics-"  # then the supervisor's pid: see _fresh_metrics_dir


def uvicorn_config(settings: Settings, metrics_dir: str | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        # A factory, not an import string: each server process builds the app from these settings
        # (picklable), so no environment variable has to carry them.
        functools.partial(create_app, settings, metrics_dir=metrics_dir),
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,  # structlog is configured by the CLI; uvicorn must not replace it
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn drains each process's connections). A port that another
    program or another Ordo instance holds is refused before anything starts."""
    ensure_port_free(settings.api_host, settings.api_port)
    if settings.api_workers <= 1:
        _keep_exit_code_on_signals()
        uvicorn.Server(uvicorn_config(settings)).run()
        return
    metrics_dir = _fresh_metrics_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the server processes
    config = uvicorn_config(settings, metrics_dir)
    try:
        # Bound but never listening, for the supervisor's life: a port taken by another program fails
        # here, once, instead of in every server process.
        with _reuseport_socket(config.host, config.port) as guard:
            port = guard.getsockname()[1]  # the one chosen for all of them when asked for port 0
            _supervise(settings, config, port, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir() -> str:
    """A new multiprocess directory, named after this supervisor's pid. The directories of supervisors
    that are gone are removed first: one killed by SIGKILL (or the machine's OOM killer) ran no
    `finally`, and its server processes stop with it (`_stop_with_parent`) leaving their files."""
    for path in Path(tempfile.gettempdir()).glob(f"{_METRICS_DIR_PREFIX}*"):
        owner = re.match(rf"{_METRICS_DIR_PREFIX}(\d+)-", path.name)
        if owner is not None and _gone(int(owner.group(1))) and path.stat().st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{os.getpid()}-")


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, not yet reaped by its parent)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:  # another user's process
        return False


def _supervise(settings: Settings, config: uvicorn.Config, port: int, metrics_dir: str) -> None:
    log = structlog.get_logger("api")
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def start() -> BaseProcess:
        process = spawn.Process(
            target=_serve_process, args=(settings, config, port, os.getpid()), name="ordo-api"
        )
        process.start()
        return process

    processes = [start() for _ in range(config.workers)]
    started = [time.monotonic()] * len(processes)
    log.info("api_serving", host=config.host, port=port, processes=[p.pid for p in processes])
    while not stop.wait(0.5):
        for i, process in enumerate(processes):
            if not process.is_alive() and time.monotonic() - started[i] >= _RESTART_EVERY_S:
                log.warning("api_process_exited", pid=process.pid, exitcode=process.exitcode)
                if process.pid is not None:
                    multiprocess.mark_process_dead(process.pid, metrics_dir)
                processes[i], started[i] = start(), time.monotonic()
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn stops accepting and finishes requests in flight
    deadline = time.monotonic() + config.timeout_graceful_shutdown + 5
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _serve_process(settings: Settings, config: uvicorn.Config, port: int, supervisor: int) -> None:
    configure(level=settings.log_level, fmt=settings.log_format)
    _stop_with_parent(supervisor)
    sock = _reuseport_socket(config.host, port)
    sock.listen(config.backlog)
    _keep_exit_code_on_signals()
    uvicorn.Server(config).run(sockets=[sock])


def _stop_with_parent(supervisor: int) -> None:
    """A server process whose supervisor died (even by SIGKILL) stops too (SIGTERM: it finishes the
    requests in flight): nobody is left to restart or stop it, or to remove its metrics directory.

    The supervisor's pid comes from the supervisor: read here, `os.getppid()` would already name the
    process that adopted this one if the supervisor died while this one was still starting."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def ensure_port_free(host: str, port: int) -> None:
    """ConfigError (one line) if something listens on host:port, another Ordo instance included.

    The server processes of one instance share the port through SO_REUSEPORT, and so could any
    other process that sets it; so before joining, check with a socket that does not set it: its
    bind fails while anyone listens there. (SO_REUSEADDR only lets it past connections in TIME_WAIT.)
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise _cannot_listen(host, port, e) from None


def _cannot_listen(host: str, port: int, e: OSError) -> ConfigError:
    return ConfigError(
        f"cannot listen on {host}:{port}: {e.strerror}; set ORDO_API_PORT (or --port) to a free port"
    )


def _keep_exit_code_on_signals() -> None:
    """uvicorn re-raises the signal that stopped it once it has shut down gracefully, to whatever
    handler was there before it: with the default one, a clean stop would end the process by SIGTERM
    (exit -15). This one makes it a normal exit (also for a signal that comes before uvicorn runs)."""

    def leave(*_: object) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise _cannot_listen(host, port, e) from e
    return sock
