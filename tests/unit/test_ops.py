"""The files in ops/ checked without a cluster: metrics named by the dashboard and alerts are defined,
labels are bounded, every alert has unit tests and a runbook entry, promtool accepts rules, tests and
config, and compose, Kubernetes and the Dockerfile agree with the CLI, the settings and each other.
(Queries run against a real Prometheus and the KEDA query against the real schema elsewhere:
tests/acceptance/test_dashboard.py, tests/db/test_status.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from cli.main import app
from observability import metrics
from store.settings import SETTINGS_DOC
from tests.opsfiles import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    OPS,
    alert_rules,
    dashboard,
    panel_queries,
    panels,
    used_metric_names,
)

REPO = OPS.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (.ci/run installs Debian's prometheus)"
)
BOUNDED_LABELS = {"outcome", "tool", "method", "route", "status", "priority_band", "state", "code", "loop"}
KNOWN_ENV = {name for name, _, _ in SETTINGS_DOC}


def defined_metrics() -> dict[str, tuple[str, ...]]:
    """Every metric Ordo defines: name as PromQL sees it -> label names."""
    defined: dict[str, tuple[str, ...]] = {}
    for registry in (metrics.WORKER, metrics.SCHEDULER, metrics.API):
        for collector in list(registry._collector_to_names):
            for family in collector.collect():
                labels = tuple(getattr(collector, "_labelnames", ()))
                suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
                for suffix in suffixes.get(family.type, ("",)):
                    defined[family.name + suffix] = labels
    for spec in metrics.SYSTEM_GAUGES.values():
        defined[spec.name] = spec.labels
    return defined


# -- metrics ---------------------------------------------------------------------------------------


def test_dashboard_and_alerts_use_only_metrics_ordo_defines():
    defined = defined_metrics()
    unknown = {name: where for name, where in used_metric_names().items() if name not in defined}
    assert unknown == {}


def test_every_metric_is_in_the_ordo_namespace_with_bounded_labels():
    for name, labels in defined_metrics().items():
        assert name.startswith("ordo_"), name
        assert set(labels) <= BOUNDED_LABELS, (name, labels)


def test_duration_buckets_resolve_a_1ms_step_and_a_60s_solve():
    buckets = metrics.DURATION_BUCKETS
    assert [b for b in buckets if b < 0.001] and [b for b in buckets if 0.001 < b <= 0.0025]
    assert [b for b in buckets if 30 <= b < 60] and [b for b in buckets if 60 < b <= 120]
    assert 60 in buckets and 0.001 in buckets


def test_each_process_kind_has_its_own_metrics():
    def names(registry: Any) -> set[str]:
        return {family.name for family in registry.collect()}

    worker, scheduler, api = names(metrics.WORKER), names(metrics.SCHEDULER), names(metrics.API)
    assert "ordo_runs_finished" in worker and "ordo_scheduler_is_leader" in scheduler
    assert "ordo_api_requests" in api
    ordo_only = [{n for n in kind if not n.startswith("ordo_process")} for kind in (worker, scheduler, api)]
    assert not (ordo_only[0] & ordo_only[1]) and not (ordo_only[0] & ordo_only[2])
    assert not (ordo_only[1] & ordo_only[2])


# -- alerts ----------------------------------------------------------------------------------------


def test_every_alert_has_a_test_that_fires_and_one_that_stays_quiet():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a quiet test"


def test_every_alert_has_a_runbook_entry_and_links_to_it():
    guide = (OPS / "README.md").read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert re.search(rf"^### {name}$", guide, re.MULTILINE), f"ops/README.md has no '### {name}'"
        assert f"ops/README.md#{name.lower()}" in rule["annotations"]["description"]
        assert rule["labels"]["severity"] in ("warning", "critical")


@needs_promtool
def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", ALERT_TESTS.name], capture_output=True, text=True, cwd=ALERT_TESTS.parent
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_accepts_the_prometheus_config():
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(OPS / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- dashboard -------------------------------------------------------------------------------------


@needs_promtool
def test_every_panel_query_is_valid_promql(tmp_path: Path):
    # promtool parses expressions in rule files: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(panel_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_panels_query_the_provisioned_datasource_and_have_unique_ids():
    datasource = yaml.safe_load(
        (OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == uid
        assert all(t["refId"] and t["expr"].strip() for t in panel["targets"])
        assert "vector(0)" not in " ".join(t["expr"] for t in panel["targets"])


def test_the_dashboard_covers_what_operators_watch():
    text = DASHBOARD.read_text()
    for metric in (
        "ordo_queue_due",
        "ordo_queue_lag_seconds",
        "ordo_runs_finished_total",
        "ordo_run_duration_seconds_bucket",
        "ordo_step_duration_seconds_bucket",
        "ordo_workers_alive",
        "ordo_worker_busy_slots",
        "ordo_scheduler_leader_heartbeat_age_seconds",
        "ordo_scheduler_tick_duration_seconds_bucket",
        "ordo_webhook_deliveries_total",
        "ordo_webhook_endpoints",
        "ordo_api_requests_total",
        "ordo_api_request_duration_seconds_bucket",
    ):
        assert metric in text, metric


# -- compose, Kubernetes, Dockerfile ---------------------------------------------------------------


def _cli() -> Any:
    return typer.main.get_command(app)  # a click group (typer may carry its own copy of click)


def assert_valid_ordo_args(args: list[str]) -> None:
    """`ordo ARGS` names a real command, and the command parses its options and values (click parses
    and converts them in make_context without running the command)."""
    command = _cli().commands.get(args[0])
    assert command is not None, f"ordo has no command {args[0]!r}"
    command.make_context(args[0], list(args[1:]))


def assert_known_env(env: dict[str, Any] | list[dict[str, Any]]) -> None:
    names = [e["name"] for e in env] if isinstance(env, list) else list(env)
    unknown = [n for n in names if n not in KNOWN_ENV]
    assert not unknown, f"environment variables Ordo does not read: {unknown}"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((OPS / "compose.yaml").read_text())


def _k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((OPS / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_compose_runs_every_role_from_one_image_with_valid_commands_and_settings():
    services = _compose()["services"]
    ordo = {name: s for name, s in services.items() if s.get("image") == "ordo:latest"}
    assert set(ordo) == {"migrate", "api", "scheduler", "worker"}
    for name, service in ordo.items():
        assert service["build"] == {"context": "..", "dockerfile": "ops/Dockerfile"}, name
        assert_valid_ordo_args(service["command"])
        assert service["command"][0] == name
        assert_known_env(service["environment"])
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert services["scheduler"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 1
    grace = float(services["worker"]["environment"]["ORDO_SHUTDOWN_GRACE_S"])
    assert float(services["worker"]["stop_grace_period"].rstrip("s")) > grace
    for name in ("prometheus", "grafana", "postgres"):
        assert name in services


def test_compose_ports_agree_with_the_prometheus_scrape_config():
    services = _compose()["services"]
    scrape = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in scrape}
    api_port = int(_option(services["api"]["command"], "--port") or 0)
    assert jobs["ordo-api"] == {"names": ["api"], "type": "A", "port": api_port}
    assert services["api"]["ports"] == [f"127.0.0.1:{api_port}:{api_port}"]
    for role in ("worker", "scheduler"):
        env = services[role]["environment"]
        assert jobs[f"ordo-{role}"] == {"names": [role], "type": "A", "port": int(env["ORDO_METRICS_PORT"])}
        assert env["ORDO_METRICS_HOST"] == "0.0.0.0"


def test_compose_mounts_files_that_exist_where_their_consumers_look():
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (OPS / source).exists(), volume
    prometheus_dir = {v.split(":")[1].rsplit("/", 1)[0] for v in services["prometheus"]["volumes"]}
    assert prometheus_dir == {"/etc/prometheus"}  # alerts.yml beside prometheus.yml, as rule_files says
    provider = yaml.safe_load((OPS / "grafana" / "provisioning" / "dashboards" / "ordo.yaml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(f":{dashboards_path}:ro") for v in services["grafana"]["volumes"])


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s() if d["kind"] == "Deployment"}


def test_kubernetes_deploys_api_two_schedulers_and_workers_from_one_image():
    deployments = _deployments()
    assert set(deployments) == {"ordo-api", "ordo-scheduler", "ordo-worker"}
    assert deployments["ordo-scheduler"]["spec"]["replicas"] == 2
    images = set()
    for name, d in deployments.items():
        spec = d["spec"]
        assert spec["selector"]["matchLabels"] == d["spec"]["template"]["metadata"]["labels"], name
        (container,) = spec["template"]["spec"]["containers"]
        images.add(container["image"])
        assert_valid_ordo_args(container["args"])
        assert container["args"][0] == name.removeprefix("ordo-")
        assert_known_env(container.get("env", []))
        assert container["envFrom"] == [{"secretRef": {"name": "ordo-db"}}]
    jobs = [d for d in _k8s() if d["kind"] == "Job"]
    for job in jobs:
        (container,) = job["spec"]["template"]["spec"]["containers"]
        images.add(container["image"])
        assert_valid_ordo_args(container["args"])
    assert images == {"ordo:latest"}


def test_kubernetes_probes_and_scrape_ports_point_at_what_each_role_serves():
    for name, d in _deployments().items():
        template = d["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        if name == "ordo-api":
            served = int(_option(container["args"], "--port") or 0)
            assert ports == {"http": served}
            port_name = "http"
        else:
            served = int(env["ORDO_METRICS_PORT"])
            assert ports == {"metrics": served} and env["ORDO_METRICS_HOST"] == "0.0.0.0"
            port_name = "metrics"
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port_name}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port_name}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(served)
        assert annotations["prometheus.io/path"] == "/metrics"
    worker = _deployments()["ordo-worker"]["spec"]["template"]["spec"]
    grace = float({e["name"]: e["value"] for e in worker["containers"][0]["env"]}["ORDO_SHUTDOWN_GRACE_S"])
    assert worker["terminationGracePeriodSeconds"] > grace


def test_pod_disruption_budgets_select_the_deployments():
    budgets = [d for d in _k8s() if d["kind"] == "PodDisruptionBudget"]
    selectors = {tuple(sorted(b["spec"]["selector"]["matchLabels"].items())) for b in budgets}
    for d in _deployments().values():
        assert tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) in selectors
    for b in budgets:
        assert ("minAvailable" in b["spec"]) != ("maxUnavailable" in b["spec"])


def test_keda_scales_the_worker_deployment_with_the_postgresql_trigger():
    (scaled,) = [d for d in _k8s() if d["kind"] == "ScaledObject"]
    (auth,) = [d for d in _k8s() if d["kind"] == "TriggerAuthentication"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ordo-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "connection"
    assert int(trigger["metadata"]["targetQueryValue"]) > 0
    assert trigger["metadata"]["query"].startswith("SELECT")


def test_the_dockerfile_installs_every_package_and_exposes_the_ports_the_manifests_use():
    dockerfile = (OPS / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    top_level = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.MULTILINE))
    assert top_level <= copied, top_level - copied
    assert 'ENTRYPOINT ["ordo"]' in dockerfile and "ordo" in project["project"]["scripts"]
    exposed = {
        int(p) for line in re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE) for p in line.split()
    }
    assert exposed == {8080, 9108}
