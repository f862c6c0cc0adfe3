"""The issue's story end to end: `ordo up` serves the API, prints an admin token once, and an agent with
its own token creates a task, triggers it and reads the run with its step outputs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil

from tests.api.conftest import REPO_ROOT, bearer, echo_task
from tests.helpers import run_ordo, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(ORDO_DATA_DIR=str(data_dir), ORDO_LOG_FORMAT="json", ORDO_POLL_S="0.2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            lines.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc.reader = reader  # type: ignore[attr-defined]
    return proc, lines


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    proc.reader.join(10)  # type: ignore[attr-defined]
    assert proc.stderr is not None
    proc.stderr.close()
    return code


def test_ordo_up_serves_the_api_and_prints_an_admin_token_once(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", _free_port()
    base = f"http://127.0.0.1:{port}"

    proc, lines = _up(data_dir, port)
    try:
        token_line = wait_for(
            lambda: next(
                (m for line in lines if (m := re.search(r"(ordo_[a-z2-7]{12}_\S{43})", line))), None
            ),
            timeout=90,
            what="the admin token on stderr",
        )
        admin = bearer(token_line[1])
        with httpx.Client(base_url=base, timeout=10) as client:
            wait_for(lambda: _get(client, "/health/ready") == 200, timeout=90, what="readiness")
            agent = client.post("/agents", json={"name": "planner"}, headers=admin).json()
            issued = client.post(
                f"/agents/{agent['id']}/tokens",
                json={"scopes": ["tasks:read", "tasks:write", "runs:read"]},
                headers=admin,
            ).json()
            me = bearer(issued["token"])
            task = client.post("/tasks", json=echo_task(), headers=me).json()
            run = client.post(f"/tasks/{task['id']}/run_now", headers=me).json()
            done = wait_for(
                lambda: (
                    (r := client.get(f"/runs/{run['id']}", headers=me).json())["state"] == "succeeded" and r
                ),
                timeout=30,
                what="the run to succeed",
            )
            docs = client.get("/docs")
            # One instance per data directory and per port: a second `ordo up` on either, or an
            # `ordo api` on the port, says so in one line; the first keeps answering alone.
            same_dir = _second(data_dir, _free_port(), "up")
            twice = _second(data_dir, port, "up")  # `./ops/up` again in the same clone
            same_port = _second(tmp_path / "other", port, "up")
            api_on_port = _second(data_dir, port, "api")
            still_up = client.get("/health").status_code
    finally:
        first_code = _stop(proc)
    assert first_code == 0, "".join(lines)
    assert done["steps"][0]["output"] == {"message": "hello world"}
    assert docs.status_code == 200
    assert same_dir.returncode == 2 and "already serves the data directory" in same_dir.stderr
    assert f"pid {proc.pid}" in same_dir.stderr
    assert twice.returncode == 2 and "already serves the data directory" in twice.stderr
    port_taken = f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert same_port.returncode == 2 and same_port.stderr.strip().splitlines()[-1].startswith(port_taken)
    assert api_on_port.returncode == 2 and api_on_port.stderr.strip().splitlines()[-1].startswith(port_taken)
    assert still_up == 200

    again, again_lines = _up(data_dir, port)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            wait_for(lambda: _get(client, "/health") == 200, timeout=90, what="the second start")
            still_valid = client.get("/tasks", headers=me).status_code
    finally:
        second_code = _stop(again)
    assert second_code == 0, "".join(again_lines)
    assert still_valid == 200
    assert not any("admin API token was created" in line for line in again_lines)


def _second(data_dir: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(ORDO_DATA_DIR=str(data_dir), ORDO_LOG_FORMAT="json")
    return run_ordo(command, "--port", str(port), env=env, timeout=120)


def _get(client: httpx.Client, path: str) -> int:
    try:
        return client.get(path).status_code
    except httpx.TransportError:
        return 0


def test_api_processes_share_a_burst_of_connections_and_stop_on_sigterm(db_url: str) -> None:
    """`ordo api` with two server processes: sixteen keep-alive clients connecting at once are spread
    over both (each listens on its own SO_REUSEPORT socket), and SIGTERM stops all of them."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "ORDO_API_WORKERS": "2", "ORDO_API_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "api"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(proc.pid)
        servers = wait_for(
            lambda: len(kids := _servers(parent)) == 2 and kids, what="two server processes", timeout=60
        )
        wait_for(lambda: _answers(port), what="the API to answer", timeout=60)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        for conn in clients:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        for conn in clients:
            assert conn.recv(64).startswith(b"HTTP/1.1 200")

        def served_by(server: psutil.Process) -> int:
            return sum(
                1
                for c in server.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )

        shares = [served_by(server) for server in servers]
        assert sum(shares) == 16 and min(shares) >= 1, shares
        for conn in clients:
            conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    assert not any(server.is_running() and server.status() != psutil.STATUS_ZOMBIE for server in servers)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _servers(parent: psutil.Process) -> list[psutil.Process]:
    # multiprocessing's resource tracker is a child too
    return [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]


def test_api_on_a_taken_port_fails_with_one_clear_line(db_url: str) -> None:
    """Another program holds the port: `ordo api` says so in one line and exits non-zero."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": db_url, "ORDO_API_WORKERS": "2"}
        result = run_ordo("api", "--port", str(port), env=env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "set ORDO_API_PORT (or --port) to a free port"
    )
