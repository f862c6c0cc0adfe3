"""The supervised embedded PostgreSQL: real `ordo` processes without DATABASE_URL sharing one server
in ORDO_DATA_DIR, which is SIGKILLed under them."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from store.embedded import RESTART_WITHIN_S
from tests.helpers import REPO_ROOT, run_ordo, wait_for


class Embedded:
    """`ordo` processes sharing the embedded server in one data directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pgdata = tmp / "data" / "pg"
        self.env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.env.update(ORDO_DATA_DIR=str(tmp / "data"), ORDO_LOG_FORMAT="json", ORDO_POLL_S="0.2")
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{args[0]}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT, env=self.env, stdout=out, stderr=out
            )
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return next(path for p, path in self.procs if p is proc).read_text()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_ordo(*args, env=self.env)

    def postmaster(self) -> int | None:
        """The pid of the running, ready postmaster, if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return pid if alive and len(lines) >= 8 and lines[7].strip() == "ready" else None

    def started(self, proc: subprocess.Popen[bytes]) -> bool:
        return '"worker_started"' in self.log(proc)

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pid = self.postmaster()
        if pid is not None:  # do not leave a server behind, whatever the test found
            psutil.Process(pid).terminate()


@pytest.fixture
def embedded(tmp_path):
    runner = Embedded(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


def _echo_task(embedded, tmp_path):
    path = tmp_path / "task.json"
    path.write_text(
        json.dumps(
            {
                "title": "still here",
                "schedule_kind": "manual",
                "payload": {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "hi"}}]},
            }
        )
    )
    added = embedded.cli("task", "add", str(path), "--json")
    assert added.returncode == 0, added.stderr
    return json.loads(added.stdout)["id"]


def test_a_killed_server_is_restarted_by_its_user_and_stopped_with_it(embedded, tmp_path):
    worker = embedded.spawn("worker")
    wait_for(lambda: embedded.started(worker), timeout=90, what="the worker to start")
    first = embedded.postmaster()
    assert first is not None
    # Something tightens the data path meanwhile (here as pytest does to its temporary directories):
    # the server's own user must be let through again on restart.
    tmp_path.chmod(0o700)

    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (pid := embedded.postmaster()) not in (None, first) and pid,
        timeout=RESTART_WITHIN_S,
        what="the server to be back",
    )
    wait_for(lambda: "embedded_postgres_restarted" in embedded.log(worker), what="the restart to be logged")
    assert "embedded_postgres_died" in embedded.log(worker)
    task_id = _echo_task(embedded, tmp_path)
    done = embedded.cli("task", "run", task_id, "--wait", "--timeout-s", "60", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "succeeded", done.stdout + done.stderr

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    wait_for(
        lambda: not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE,
        timeout=30,
        what="the restarted server to stop with its last user",
    )
    assert embedded.postmaster() is None


def test_users_killed_with_sigkill_do_not_keep_the_server_alive(embedded):
    killed = embedded.spawn("worker")
    wait_for(lambda: embedded.started(killed), timeout=90, what="the first worker to start")
    last = embedded.spawn("worker")
    wait_for(lambda: embedded.started(last), timeout=90, what="the second worker to start")
    server = embedded.postmaster()

    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    last.send_signal(signal.SIGTERM)
    assert last.wait(60) == 0
    wait_for(lambda: embedded.postmaster() is None, timeout=30, what="the last live user to stop the server")
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE


def test_a_server_that_cannot_be_restarted_ends_its_user_loudly(embedded):
    worker = embedded.spawn("worker")
    wait_for(lambda: embedded.started(worker), timeout=90, what="the worker to start")
    # A setting PostgreSQL refuses at start-up: the server runs now, but cannot start again.
    with (embedded.pgdata / "postgresql.auto.conf").open("a") as conf:
        conf.write("\nno_such_setting_at_all = 1\n")
    os.kill(embedded.postmaster(), signal.SIGKILL)

    code = worker.wait(RESTART_WITHIN_S + 60)
    log = embedded.log(worker)
    assert code != 0
    assert "embedded_postgres_lost" in log and "could not be restarted" in log
    assert "no_such_setting_at_all" in log  # the server's own reason, from its log
