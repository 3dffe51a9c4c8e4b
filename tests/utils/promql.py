"""The PromQL of our dashboard and alert rules, and the metric names it reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from core.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "picmetric.json"
# Triton exports these only where it sees a GPU; the dashboard shows them on GPU hosts.
GPU_ONLY = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"}
# The gateway exports these once a fault happened (a labelled counter has no series before its
# first count); tests/faults/test_model_repair.py checks them in a real scrape after one.
FAULT_ONLY = {"picmetric_model_repairs_total"}
_NAME = re.compile(
    r"(?<![\w$\"'])((?:picmetric|nv)_[a-zA-Z0-9_]+|picmetric:[a-zA-Z0-9_:]+|up)(?=\s*[{\[)\s]|$)"
)


def expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs


def recorded_names() -> set[str]:
    """The series our recording rules make (Prometheus computes them; no target exports them)."""
    rules = yaml.safe_load(ALERTS.read_text())
    rules_of = [rule for group in rules["groups"] for rule in group["rules"]]
    return {rule["record"] for rule in rules_of if "record" in rule}


def metric_names(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def scraped_names(exposition: str) -> set[str]:
    """Metric names in a Prometheus text exposition (histogram series included)."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def repository_file(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))
