"""The dashboard against the real consumer: Debian's `prometheus` scrapes a running Ordo (API with two
server processes, scheduler, worker) every second while a workload provokes what the panels show —
successes, a failing run that dies, a 503, a busy worker, scheduled occurrences, webhook
deliveries (one refused with a 500, then retried) to a receiver that verifies them — and every
panel's PromQL, sent through Prometheus's HTTP API, returns at least one series with a number (NaN,
what histogram_quantile gives without observations, does not count).
The alert rules are loaded by the same Prometheus and evaluate without errors.

Slow (about a minute): `./ops/test -m slow tests/acceptance/test_dashboard.py`. Skipped without the
`prometheus` binary (`apt-get install prometheus`; .ci/run installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.acceptance import live as L
from tests.helpers import wait_for
from tests.opsfiles import ALERTS, alert_rules, panel_queries
from tests.webhook_receiver import receiving

PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (.ci/run installs it)"),
]


def _start_prometheus(tmp: Path, live: L.LiveOrdo) -> tuple[subprocess.Popen[bytes], str]:
    port = L.free_port()
    target = {kind: base.removeprefix("http://") for kind, base in live.targets().items()}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [ALERTS.name],
        "scrape_configs": [
            {"job_name": f"ordo-{kind}", "static_configs": [{"targets": [address]}]}
            for kind, address in target.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS, tmp / ALERTS.name)
    log = open(tmp / "prometheus.out", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_file = log  # type: ignore[attr-defined]
    return process, f"http://127.0.0.1:{port}"


def _query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _scraped(prometheus: str, jobs: int) -> bool:
    try:
        return len(_query(prometheus, "up == 1")) == jobs
    except (httpx.HTTPError, ValueError, AssertionError):
        return False


def test_every_panel_returns_series_from_a_real_prometheus_scraping_a_running_ordo(ordo, tmp_path):
    live = L.start(ordo)
    prometheus, url = _start_prometheus(tmp_path, live)
    try:
        wait_for(lambda: _scraped(url, 1), timeout=60, interval=0.5, what="Prometheus to scrape the API")
        assert httpx.get(f"{live.api}/health/ready", timeout=10).status_code == 503  # a real 5xx
        L.start_rest(live)
        wait_for(lambda: _scraped(url, 3), timeout=60, interval=0.5, what="Prometheus to scrape all three")

        with L.slow_server(delay_s=4) as slow, receiving() as receiver:
            receiver.answer(500)  # the first delivery fails and is retried (ORDO_WEBHOOK_RETRY_S: 5 s)
            receiver.secrets.append(live.add_webhook(receiver.url, ["plant.tick"])["secret"])
            for i in range(3):
                live.publish("plant.tick", {"i": i})
            busy = live.run_now(live.add_task(L.sleepy_task(slow)))
            echo = live.add_task(L.echo_task())
            runs = [live.run_now(echo) for _ in range(20)]
            live.add_task(
                {**L.echo_task("every minute"), "schedule_kind": "cron", "schedule_expr": "* * * * *"}
            )
            doomed = live.run_now(live.add_task(L.refused_call_task(L.free_port())))
            for run_id in runs:
                live.wait_run(run_id, ("succeeded",))
            live.wait_run(doomed, ("dead",))
            live.wait_run(busy, ("succeeded",), timeout=60)
            receiver.wait_for(lambda r: len(r.accepted()) == 3, timeout=60)
        time.sleep(3)  # a few more scrapes after the last run
        assert _query(url, "max_over_time(ordo_worker_busy_slots[5m]) > 0"), "no scrape saw the worker busy"

        empty, answered = [], []
        for title, expr in panel_queries():
            # A series counts when it has a number: histogram_quantile over no observations is NaN.
            numbers = [r for r in _query(url, expr) if r["value"][1] != "NaN"]
            (answered if numbers else empty).append(title)
        assert empty == [], f"empty panels: {sorted(empty)}"
        assert answered

        rules = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r for group in rules for r in group["rules"]}
        assert set(loaded) == {rule["alert"] for rule in alert_rules()}
        for name, rule in loaded.items():
            assert rule["health"] != "err", (name, rule.get("lastError"))
        firing = {a["metric"]["alertname"] for a in _query(url, 'ALERTS{alertstate="firing"}')}
        assert "OrdoRunsDying" in firing  # the dead run, seen by the rule that has no `for`
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        prometheus.log_file.close()  # type: ignore[attr-defined]
