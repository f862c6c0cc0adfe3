"""What the files in ops/ say: the dashboard's panels and queries, the alert rules, and the metric names
they use. Shared by the static tests (tests/unit/test_ops.py) and the live ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

OPS = Path(__file__).resolve().parents[1] / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "ordo.json"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERT_TESTS = OPS / "prometheus" / "alerts_test.yml"

_METRIC = re.compile(r"\bordo_[a-z_]+\b")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    """Panels with queries (rows excluded)."""
    return [p for p in dashboard()["panels"] if p.get("type") != "row"]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def used_metric_names() -> dict[str, set[str]]:
    """Every ordo_ metric name the dashboard and the alert rules query, with where it is used."""
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in _METRIC.findall(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for title, expr in panel_queries():
        for name in _METRIC.findall(expr):
            used.setdefault(name, set()).add(f"panel {title}")
    return used


def keda_query() -> str:
    """The SQL of the KEDA postgresql trigger in ops/k8s/keda.yaml."""
    docs = yaml.safe_load_all((OPS / "k8s" / "keda.yaml").read_text())
    (scaled,) = [d for d in docs if d and d["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    return trigger["metadata"]["query"]
