"""Prometheus configuration and alert rules checked by promtool; the dashboard's JSON; the
bootstrap script under shellcheck; the TensorRT switch and check-gpu."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import MODEL_REPOSITORY, PROJECT_ROOT
from picmetric import tensorrt
from tests.utils.promql import DASHBOARD, DEPLOY, expressions, metric_names


def _run(*command: str, cwd: Path = PROJECT_ROOT) -> str:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed; ./bootstrap.sh test installs it")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_prometheus_config() -> None:
    assert "SUCCESS" in _run(
        "promtool", "check", "config", str(DEPLOY / "prometheus/prometheus.yml")
    )


def test_promtool_rule_tests_pass() -> None:
    assert "SUCCESS" in _run(
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


def test_every_expression_reads_some_metric() -> None:
    assert all(metric_names(expr) for expr in expressions())


def test_bootstrap_is_clean_under_shellcheck() -> None:
    _run("shellcheck", "bootstrap.sh", ".ci/run")


def test_tensorrt_switch_adds_fp16_with_engine_cache_and_removes_it_exactly(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(MODEL_REPOSITORY, repository, ignore=shutil.ignore_patterns("*.onnx"))
    before = {p: p.read_text() for p in repository.glob("*/config.pbtxt")}
    changed = tensorrt.switch(repository, enable=True)
    assert changed and set(changed) == set(tensorrt.onnxruntime_configs(repository))
    assert repository / "mtcnn_pnet" / "config.pbtxt" not in changed  # one engine per shape
    text = (repository / "resnet50" / "config.pbtxt").read_text()
    assert 'name : "tensorrt"' in text and '"FP16"' in text and tensorrt.ENGINE_CACHE in text
    assert tensorrt.switch(repository, enable=True) == []  # idempotent
    tensorrt.switch(repository, enable=False)
    assert {p: p.read_text() for p in before} == before


def test_check_gpu_says_plainly_what_is_used() -> None:
    out = _run(sys.executable, "-m", "picmetric", "check-gpu")
    assert "onnxruntime" in out and "Triton" in out
    if shutil.which("nvidia-smi") is None:
        assert "the CPU is used" in out
