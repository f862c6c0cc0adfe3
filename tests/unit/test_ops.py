"""Ops files: every metric a dashboard or alert uses is one Ordo exports; manifests parse."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import api.metrics
import observability.metrics  # noqa: F401

OPS = Path(__file__).resolve().parents[2] / "ops"
METRIC = re.compile(r"\bordo_[a-z_]+\b")


def exported_names() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
    source = (Path(api.metrics.__file__)).read_text()
    names.update(re.findall(r'GaugeMetricFamily\(\s*"(ordo_[a-z_]+)"', source))
    return names


def used_names() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    alerts = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule['alert']}")
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "ordo.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in METRIC.findall(target["expr"]):
                used.setdefault(name, set()).add(f"panel {panel['title']}")
    return used


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", name)


def test_dashboards_and_alerts_only_use_exported_metrics():
    exported = {_family(n) for n in exported_names()}
    unknown = {name: where for name, where in used_names().items() if _family(name) not in exported}
    assert unknown == {}


def test_every_manifest_parses():
    for path in OPS.rglob("*.y*ml"):
        assert list(yaml.safe_load_all(path.read_text())), path
