"""Monitoring against a running Ordo: the live /metrics of the API, a worker and the scheduler pass
`promtool check metrics`, name every metric the dashboard and alerts use, and move by exactly what a
known workload did; `ordo status` and GET /status tell the same story."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance import live as L
from tests.helpers import wait_for
from tests.opsfiles import used_metric_names

PROMTOOL = shutil.which("promtool")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def families(text: str) -> set[str]:
    """Metric names as PromQL sees them: counters with _total, histograms with _bucket/_sum/_count."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def promtool_accepts(kind: str, text: str) -> None:
    """`promtool check metrics` finds no error and no lint problem (skipped without promtool:
    .ci/run installs it)."""
    if PROMTOOL is None:
        return
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), f"{kind}: {check.stdout}{check.stderr}"


@pytest.fixture
def live(ordo):
    running = L.start(ordo)
    yield running


def test_live_metrics_pass_promtool_name_what_dashboard_and_alerts_use_and_count_exactly(live):
    """10 runs move `succeeded` by exactly 10 on the worker and run_now by exactly 10 on the API, whichever
    API server process answers the scrape; a failing run shows as failed then dead."""
    not_ready = httpx.get(f"{live.api}/health/ready", timeout=10)
    assert not_ready.status_code == 503  # no scheduler or worker yet: a real 5xx for the dashboard
    L.start_rest(live)
    for kind, base in live.targets().items():  # fresh processes, no labelled series yet
        promtool_accepts(kind, live.metrics(base))
    echo = live.add_task(L.echo_task())
    worker_before = live.metrics(live.worker_metrics)
    api_before = live.metrics(live.api)

    run_ids = [live.run_now(echo) for _ in range(10)]
    for run_id in run_ids:
        live.wait_run(run_id, ("succeeded",))
    doomed = live.run_now(live.add_task(L.refused_call_task(L.free_port())))
    assert live.wait_run(doomed, ("dead",))["attempt"] == 2

    worker_after = live.metrics(live.worker_metrics)
    delta = lambda name, **lb: value(worker_after, name, **lb) - value(worker_before, name, **lb)  # noqa: E731
    assert delta("ordo_runs_finished_total", outcome="succeeded") == 10
    assert delta("ordo_runs_finished_total", outcome="failed") == 1
    assert delta("ordo_runs_finished_total", outcome="dead") == 1
    assert delta("ordo_runs_leased_total") == 12
    assert delta("ordo_steps_total", tool="echo.message", outcome="ok") == 10
    assert delta("ordo_steps_total", tool="http.request", outcome="failed") == 2
    assert delta("ordo_run_duration_seconds_count") == 12
    assert delta("ordo_step_duration_seconds_count", tool="echo.message") == 10
    run_now = {"method": "POST", "route": "/tasks/{task_id}/run_now", "status": "202"}
    # Two API server processes answer scrapes in turn; each reports the sum of both.
    for _ in range(6):
        api_after = live.metrics(live.api)
        moved = value(api_after, "ordo_api_requests_total", **run_now) - value(
            api_before, "ordo_api_requests_total", **run_now
        )
        assert moved == 11
    ready_503 = {"method": "GET", "route": "/health/ready", "status": "503"}
    assert value(api_after, "ordo_api_requests_total", **ready_503) >= 1
    # Memory and CPU of both API server processes, whichever answers (each copies its own figures).
    servers = [
        c
        for c in psutil.Process(live.processes["api"].pid).children()
        if "spawn_main" in " ".join(c.cmdline())
    ]
    assert len(servers) == 2
    assert value(api_after, "ordo_process_resident_memory_bytes") > max(s.memory_info().rss for s in servers)
    assert value(api_after, "ordo_process_cpu_seconds_total") > 0

    live_names: set[str] = set()
    for kind, base in live.targets().items():
        text = live.metrics(base)
        live_names |= families(text)
        promtool_accepts(kind, text)
    missing = {name: where for name, where in used_metric_names().items() if name not in live_names}
    assert missing == {}


def test_status_probes_and_one_metrics_port_per_process(live):
    """`ordo status --json` and GET /status are one implementation (same keys, same counts); workers
    and schedulers answer probes; a second worker on a taken metrics port refuses with one line."""
    L.start_rest(live, concurrency=3)
    echo = live.add_task(L.echo_task())
    for run_id in [live.run_now(echo) for _ in range(3)]:
        live.wait_run(run_id, ("succeeded",))

    cli = live.ordo.run("status", "--json")
    api = httpx.get(f"{live.api}/status", headers=live.headers, timeout=10)

    assert cli.returncode == 0, cli.stderr
    assert api.status_code == 200, api.text
    from_cli, from_api = json.loads(cli.stdout), api.json()
    assert from_cli.keys() == from_api.keys()
    for report in (from_cli, from_api):
        assert report["runs_last_hour"]["succeeded"] == 3
        assert report["queue"]["due"] == 0
        assert report["workers"]["alive"] == 1 and report["workers"]["slots"] == 3
        (worker,) = report["workers"]["processes"]
        assert (
            worker["concurrency"] == 3 and worker["alive"] and worker["pid"] == live.processes["worker"].pid
        )
        assert report["scheduler"]["ok"] and report["scheduler"]["leader"].endswith(
            f":{live.processes['scheduler'].pid}"
        )
        assert report["webhooks"] == {
            "endpoints_by_state": {"active": 0, "paused": 0, "breaker_open": 0},
            "breakers_open": [],
        }
    text = live.ordo.run("status")
    assert text.returncode == 0, text.stderr
    assert "3 succeeded" in text.stdout and "1 alive (3 slots" in text.stdout

    for base in (live.worker_metrics, live.scheduler_metrics):
        assert httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok"
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["database"] == "reachable"
        assert httpx.get(f"{base}/nope", timeout=5).status_code == 404

    port = live.worker_metrics.rsplit(":", 1)[1]
    second = live.ordo.run("worker", "--metrics-port", port, timeout=60)
    assert second.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in second.stderr and "its own port" in second.stderr


def test_api_server_processes_stop_when_their_supervisor_is_killed(ordo, tmp_path):
    """SIGKILL to `ordo api` leaves no server process behind holding the port and the database; the
    metrics directory it could not remove is removed by the next `ordo api` (not another's, alive)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ordo.env["TMPDIR"] = str(tmp)
    live = L.start(ordo)
    supervisor = psutil.Process(live.processes["api"].pid)
    servers = [c for c in supervisor.children() if "spawn_main" in " ".join(c.cmdline())]
    assert len(servers) == 2
    (stale,) = tmp.glob(f"ordo-api-metrics-{supervisor.pid}-*")
    supervisor.send_signal(signal.SIGKILL)
    gone, alive = psutil.wait_procs(servers, timeout=20)
    assert alive == [] and len(gone) == 2
    assert stale.is_dir()  # nobody was left to remove it

    other = L.start(ordo)  # a new `ordo api` on the same machine
    (fresh,) = tmp.glob(f"ordo-api-metrics-{other.processes['api'].pid}-*")
    assert not stale.exists()
    third = L.start(ordo)  # and one beside it: the live one's directory stays
    wait_for(lambda: list(tmp.glob(f"ordo-api-metrics-{third.processes['api'].pid}-*")), what="its directory")
    assert fresh.is_dir()


def test_api_server_processes_stop_when_their_supervisor_is_killed_while_they_start(ordo):
    """Killed before its server processes have even imported the app, `ordo api` leaves none behind:
    by the time they look for their supervisor they have been adopted by another process."""
    api = ordo.spawn("api", "--port", str(L.free_port()), "--workers", "2", name="api")
    supervisor = psutil.Process(api.pid)

    def servers() -> list[psutil.Process]:
        return [c for c in supervisor.children() if "spawn_main" in " ".join(c.cmdline())]

    wait_for(lambda: len(servers()) == 2, timeout=30, interval=0.01, what="two server processes")
    starting = servers()
    supervisor.send_signal(signal.SIGKILL)
    gone, alive = psutil.wait_procs(starting, timeout=20)
    assert alive == [] and len(gone) == 2
