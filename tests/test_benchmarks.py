"""The benchmarks stay runnable: each imports as the module `python -m benchmarks.<name>` runs and
answers --help (a benchmark itself takes minutes; BENCHMARKS.md has their numbers)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT

BENCHMARKS = sorted(
    path.stem for path in (PROJECT_ROOT / "benchmarks").glob("*.py") if path.stem != "__init__"
)


def test_there_are_benchmarks() -> None:
    assert {"real_photos", "admission", "autoscale_signal"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("name", [n for n in BENCHMARKS if not n.startswith("_")])
def test_benchmark_answers_help(name: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout


def test_autoscale_signals_count_only_the_models_clients_call() -> None:
    """Two metric readings 10 s apart, parsed from Triton's text format: MTCNN's pyramid bands
    queueing behind each other raise the all-model ratio, not the client models' signals; one
    resnet50 request waiting 0.5 s of every second is 0.5 waiting (Little's law)."""
    from benchmarks.autoscale_signal import parse_metrics, signals

    def reading(seconds: int) -> str:
        lines = []
        for model, queue, compute, duration, pending in (
            ("mtcnn_pnet", 4_000_000, 1_000_000, 5_000_000, 20),
            ("mtcnn", 0, 2_000_000, 2_000_000, 0),
            ("resnet50", 500_000, 500_000, 1_000_000, 1),
        ):
            labels = f'{{model="{model}",version="1"}}'
            lines += [
                f"nv_inference_queue_duration_us{labels} {queue * seconds}",
                f"nv_inference_compute_infer_duration_us{labels} {compute * seconds}",
                f"nv_inference_request_duration_us{labels} {duration * seconds}",
                f"nv_inference_request_success{labels} {2 * seconds}",
                f"nv_inference_pending_request_count{labels} {pending}",
            ]
        return "\n".join(["# HELP nv_inference_count ...", *lines])

    found = signals([(0.0, parse_metrics(reading(0))), (10.0, parse_metrics(reading(10)))])
    assert found.all_ratio == 4.5 / 3.5
    assert found.client_ratio == 0.5 / 2.5
    assert (found.waiting, found.pending, found.in_triton) == (0.5, 1.0, 3.0)
    assert found.queue_ms == 500_000 / 4 / 1000


def test_thread_variants_change_only_threads_and_instances(tmp_path: Path) -> None:
    """A variant's repository differs from the committed one exactly where the variant says."""
    from benchmarks._served import NETWORKS
    from benchmarks.triton_threads import VARIANTS, variant_repository
    from core.model_config import read_config
    from core.paths import MODEL_REPOSITORY

    converted = tmp_path / "converted"
    for network in NETWORKS:
        (converted / network / "1").mkdir(parents=True)
        (converted / network / "1" / "model.onnx").write_bytes(network.encode())
    variant = VARIANTS["onnx-1-yolo-2"]
    target = variant_repository(converted, variant, tmp_path / "variant")
    for network in NETWORKS:
        assert (target / network / "1" / "model.onnx").read_bytes() == network.encode()
        config, committed = read_config(target / network), read_config(MODEL_REPOSITORY / network)
        assert config.parameters["intra_op_thread_count"].string_value == "1"
        count = 2 if network == "yolov3_backbone" else committed.instance_group[0].count
        assert config.instance_group[0].count == count
        del config.parameters["intra_op_thread_count"]
        config.instance_group[0].count = committed.instance_group[0].count
        assert config == committed
