"""`ordo up`'s process tree: scheduler, worker and API as child processes, restarted if they die,
stopped together (SIGTERM, then SIGKILL after their grace period) when `ordo up` is asked to stop.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChildSpec", "supervise"]

_MAX_BACKOFF_S = 30.0


@dataclass
class ChildSpec:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def _parent_death_signal() -> Callable[[int], None] | None:
    """A function for the child (run between fork and exec, given `ordo up`'s pid) that asks Linux to
    send it SIGTERM when `ordo up` dies, even by SIGKILL, so no orphan keeps running; None where that
    is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def die_with(parent: int) -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # it died between the fork and the line above: no signal will come
            os._exit(1)

    return die_with


_DIE_WITH_PARENT = _parent_death_signal()


def _start(child: ChildSpec, env: dict[str, str], log: Any) -> None:
    # Own session: a Ctrl-C at the terminal reaches `ordo up` only, which then stops children in order.
    child.proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *child.args],
        env=env,
        start_new_session=True,
        preexec_fn=None if _DIE_WITH_PARENT is None else functools.partial(_DIE_WITH_PARENT, os.getpid()),
    )
    child.started_at = time.monotonic()
    log.info("child_started", child=child.name, pid=child.proc.pid)


def supervise(
    children: list[ChildSpec], env: dict[str, str], stop: threading.Event, log: Any, grace_s: float
) -> int:
    """Run children until `stop`; returns the exit code for `ordo up`."""
    if _DIE_WITH_PARENT is None:
        log.warning("children_may_outlive_ordo_up", reason="no parent-death signal on this platform")
    for child in children:
        _start(child, env, log)
    while not stop.wait(0.5):
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            if child.next_start == 0.0:
                # A child that ran for a while before dying restarts at once; a crash loop backs off.
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(_MAX_BACKOFF_S, 2.0**child.restarts - 1)
                child.next_start = now + delay
                log.error("child_exited", child=child.name, exit_code=code, restart_in_s=delay)
            if now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                _start(child, env, log)
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 5
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("child_killed", child=child.name)
            child.proc.kill()
            child.proc.wait()
    return 0
