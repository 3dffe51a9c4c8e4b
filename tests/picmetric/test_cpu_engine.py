"""The CPU engine switch in picmetric/cpu_engine.py: it adds the onnxruntime backend's OpenVINO
accelerator (with our precision parameter) to every onnxruntime model's config.pbtxt through
protobuf, BF16 only where measured, and removes it exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.model_config import read_config
from core.paths import MODEL_REPOSITORY
from picmetric import cpu_engine
from picmetric.repository import copy_models

MODELS = sorted(p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt"))
NETWORKS = [
    "mtcnn_onet",
    "mtcnn_pnet",
    "mtcnn_pyramid_pnet",
    "mtcnn_rnet",
    "resnet50",
    "yolov3_backbone",
]


def _accelerator(repository: Path, model: str) -> tuple[str, str] | None:
    """(name, inference_precision) of the model's CPU accelerator, or None."""
    accelerators = read_config(repository / model).optimization.execution_accelerators
    found = [
        (a.name, a.parameters[cpu_engine.PRECISION]) for a in accelerators.cpu_execution_accelerator
    ]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_engine_switch_puts_every_network_on_openvino_and_back_byte_for_byte(
    tmp_path: Path, precision: str
) -> None:
    repository = copy_models(MODELS, tmp_path / "repository")
    before = {p: p.read_bytes() for p in repository.glob("*/config.pbtxt")}
    changed = cpu_engine.switch(repository, "openvino", precision)
    # Every ONNX network, PNet and the pyramid model too (OpenVINO keeps dynamic shapes);
    # Python models and the ensemble have no accelerator.
    assert sorted(p.parent.name for p in changed) == NETWORKS
    bf16 = {"mtcnn_onet"} if precision == "bf16" else set()
    for model in NETWORKS:
        want = "BF16" if model in bf16 else "FP32"
        assert _accelerator(repository, model) == ("openvino", want), model
        assert changed[repository / model / "config.pbtxt"] == f"openvino {want}"
    assert cpu_engine.switch(repository, "openvino", precision) == {}  # idempotent
    assert set(cpu_engine.switch(repository, "onnxruntime")) == set(changed)
    assert {p: p.read_bytes() for p in before} == before
    assert cpu_engine.switch(repository, "onnxruntime") == {}


def test_cpu_engine_bf16_goes_only_to_networks_measured_in_bf16(tmp_path: Path) -> None:
    """BF16 where the cascade's faces stay the mtcnn package's (ONet); the others FP32 with a
    reason: measured and failed (PNet, RNet) or not measurable here (random weights)."""
    kept = cpu_engine.kept_fp32(MODEL_REPOSITORY, "bf16")
    assert sorted(kept) == [n for n in NETWORKS if n not in cpu_engine.BF16_VERIFIED]
    assert "landmarks move 6 px" in kept["mtcnn_pnet"]
    assert kept["resnet50"] == kept["yolov3_backbone"] == cpu_engine.BF16_UNVERIFIED
    assert cpu_engine.kept_fp32(MODEL_REPOSITORY, "fp32") == {}


def test_cpu_engine_switch_keeps_other_accelerators() -> None:
    config = read_config(MODEL_REPOSITORY / "resnet50")
    config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    on = cpu_engine.switched(config, "openvino", "BF16")
    assert [a.name for a in on.optimization.execution_accelerators.cpu_execution_accelerator] == [
        "openvino"
    ]
    off = cpu_engine.switched(on, "onnxruntime")
    assert off == config
    assert off.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"


def test_cpu_engine_switch_refuses_an_unknown_engine_or_precision(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the engines are onnxruntime, openvino"):
        cpu_engine.switch(tmp_path, "tvm")
    with pytest.raises(ValueError, match="the precisions fp32, bf16"):
        cpu_engine.switch(tmp_path, "openvino", "int8")


def test_picmetric_cpu_engine_command_on_a_copy_of_the_repository(tmp_path: Path) -> None:
    repository = copy_models(MODELS, tmp_path / "repository")
    before = {p: p.read_bytes() for p in repository.glob("*/config.pbtxt")}
    command = [sys.executable, "-m", "picmetric", "cpu-engine"]
    where = ["--repository", str(repository)]
    on = subprocess.run(
        [*command, "openvino", "--precision", "bf16", *where], capture_output=True, text=True
    )
    assert on.returncode == 0, on.stderr
    assert "CPU engine openvino: 6 config(s) changed" in on.stderr
    assert "mtcnn_onet: openvino BF16" in on.stderr
    assert "resnet50 stays FP32: its real weights cannot be downloaded" in on.stderr
    assert _accelerator(repository, "mtcnn_pnet") == ("openvino", "FP32")
    refused = subprocess.run(
        [*command, "onnxruntime", "--precision", "bf16", *where], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "fp32 only" in refused.stderr
    off = subprocess.run([*command, "onnxruntime", *where], capture_output=True, text=True)
    assert off.returncode == 0, off.stderr
    assert "CPU engine onnxruntime: 6 config(s) changed" in off.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_cpu_engine_switch_of_some_models_leaves_the_others(tmp_path: Path) -> None:
    """Per network what is faster on this CPU: only the named models change."""
    repository = copy_models(MODELS, tmp_path / "repository")
    before = {p: p.read_bytes() for p in repository.glob("*/config.pbtxt")}
    changed = cpu_engine.switch(repository, "openvino", "fp32", ["resnet50", "mtcnn_pnet"])
    assert sorted(p.parent.name for p in changed) == ["mtcnn_pnet", "resnet50"]
    assert _accelerator(repository, "mtcnn_rnet") is None
    with pytest.raises(ValueError, match="mtcnn: not an onnxruntime model"):
        cpu_engine.switch(repository, "openvino", "fp32", ["mtcnn"])
    cpu_engine.switch(repository, "onnxruntime")
    assert {p: p.read_bytes() for p in before} == before
