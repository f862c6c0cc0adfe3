"""Acceptance tests drive the real `ordo` command as subprocesses against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_ordo

REPO = Path(__file__).resolve().parents[2]


class Ordo:
    """Runs `ordo` commands with DATABASE_URL pointing at the test database."""

    def __init__(self, db_url: str, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "ORDO_LOG_FORMAT": "json",
            "ORDO_LEASE_S": "3",
            "ORDO_POLL_S": "0.2",
            "ORDO_RESCUE_INTERVAL_S": "0.5",
            "ORDO_SCHEDULER_TICK_S": "0.2",
            "ORDO_SCHEDULER_STANDBY_RETRY_S": "0.5",
            "ORDO_OUTBOUND_ALLOW": "127.0.0.1",  # test servers stand in for the systems tasks call
        }
        self.tmp = tmp
        self.children: list[subprocess.Popen[bytes]] = []

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ):
        return run_ordo(*args, input=input, env={**self.env, **(env or {})}, timeout=timeout)

    def spawn(
        self, *args: str, env: dict[str, str] | None = None, name: str = "proc"
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}-{len(self.children)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
            cwd=REPO,
        )
        proc.log_file = log  # type: ignore[attr-defined]
        self.children.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.log_file.close()  # type: ignore[attr-defined]


@pytest.fixture
def ordo(db_url: str, tmp_path: Path) -> Iterator[Ordo]:
    runner = Ordo(db_url, tmp_path)
    try:
        yield runner
    finally:
        runner.stop_all()
