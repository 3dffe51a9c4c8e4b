"""Prometheus configuration and alert rules checked by promtool; the dashboard's JSON."""

from __future__ import annotations

import json

import yaml

from tests.utils.commands import run_tool
from tests.utils.promql import ALERTS, DASHBOARD, DEPLOY, expressions, metric_names


def test_promtool_accepts_the_prometheus_config() -> None:
    assert "SUCCESS" in run_tool(
        "promtool", "check", "config", str(DEPLOY / "prometheus/prometheus.yml")
    )


def test_promtool_rule_tests_pass() -> None:
    assert "SUCCESS" in run_tool(
        "promtool", "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus"
    )


def test_dashboard_queries_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "picmetric"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "prometheus" for p in panels)
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("requests", "errors", "latency", "batch size", "queue", "compute", "gpu"):
        assert topic in titles


def test_model_repairs_have_a_panel_and_an_alert() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if "repairs" in p["title"].lower()]
    assert [t["expr"] for p in panels for t in p["targets"] if "model_repairs" in t["expr"]]
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    (alert,) = [r for r in rules if r.get("alert") == "PicmetricModelRepairsRepeated"]
    assert metric_names(alert["expr"]) == {"picmetric_model_repairs_total"}


def test_bulk_jobs_have_a_panel_for_each_of_their_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    read = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in metric_names(target["expr"])
    }
    jobs = {
        "picmetric_jobs_queued_photos",
        "picmetric_job_photos_total",
        "picmetric_job_duration_seconds_bucket",
        "picmetric_jobs_running",
        "picmetric_job_webhooks_total",
    }
    assert jobs <= read


def test_every_expression_reads_some_metric() -> None:
    exprs = expressions()
    assert exprs, "no PromQL found in the alert rules or the dashboard"
    assert [expr for expr in exprs if not metric_names(expr)] == []


def test_dashboard_shows_replicas_autoscaling_admission_and_decode_memory() -> None:
    """What the service does since the dashboard was first made (issue 31), on a grid Grafana
    can lay out: unique ids, within 24 columns, no two panels on the same cells."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        for x in range(place["x"], place["x"] + place["w"]):
            for y in range(place["y"], place["y"] + place["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for read in (
        "picmetric_triton_replicas",
        "picmetric:triton_requests_in_flight:rate1m",
        'errortype=~"rate_limited',
        "picmetric_decode_memory_budget_bytes",
        "by (model, instance) (rate(nv_inference_queue_duration_us",
        "by (model, instance) (rate(nv_inference_compute_infer_duration_us",
    ):
        assert read in exprs, read


def test_latency_exemplars_link_to_the_trace_store() -> None:
    """The latency panels ask for exemplars; Grafana's Prometheus source sends their trace_id to
    the Jaeger source (docker-compose.yml's trace store)."""
    dashboard = json.loads(DASHBOARD.read_text())
    latency = [p for p in dashboard["panels"] if p["title"].lower().startswith("latency")]
    assert latency and all(t.get("exemplar") for p in latency for t in p["targets"])
    sources = DEPLOY / "grafana" / "provisioning" / "datasources"
    (prometheus,) = yaml.safe_load((sources / "prometheus.yml").read_text())["datasources"]
    (jaeger,) = yaml.safe_load((sources / "jaeger.yml").read_text())["datasources"]
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert (link["name"], link["datasourceUid"]) == ("trace_id", jaeger["uid"])


def _quantity(text: str) -> float:
    """A Kubernetes quantity as the HPA reads it: "1500m" is 1.5."""
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_the_autoscaling_signal_is_drawn_against_the_charts_target() -> None:
    """The Triton HPA's signal is drawn with the chart's default target as a line, and its title
    names that target: a changed default that the panel does not follow fails here."""
    values = yaml.safe_load((DEPLOY / "helm" / "picmetric" / "values.yaml").read_text())
    target = _quantity(values["triton"]["autoscaling"]["targetRequestsInFlight"])
    dashboard = json.loads(DASHBOARD.read_text())
    (panel,) = [
        p
        for p in dashboard["panels"]
        if any("picmetric:triton_requests_in_flight" in t["expr"] for t in p.get("targets", []))
    ]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [step["value"] for step in defaults["thresholds"]["steps"]] == [None, target]
    assert f"target ({target:g})" in panel["title"]
