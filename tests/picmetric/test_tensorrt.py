"""The TensorRT switch in picmetric/tensorrt.py: it adds the FP16 accelerator with an engine cache
to the onnxruntime models' config.pbtxt (through protobuf) and removes it exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.model_config import read_config
from core.paths import MODEL_REPOSITORY
from picmetric import tensorrt
from picmetric.repository import copy_models

MODELS = sorted(p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt"))


def test_tensorrt_switch_adds_fp16_with_engine_cache_and_removes_it_exactly(tmp_path: Path) -> None:
    repository = copy_models(MODELS, tmp_path / "repository")
    before = {p: p.read_text() for p in repository.glob("*/config.pbtxt")}
    changed = tensorrt.switch(repository, enable=True)
    # The fixed-shape networks only: PNet and the pyramid model change shape with every photo
    # (one engine per shape); Python models and the ensemble have no accelerator.
    assert sorted(p.parent.name for p in changed) == [
        "mtcnn_onet",
        "mtcnn_rnet",
        "resnet50",
        "yolov3_backbone",
    ]
    config = read_config(repository / "resnet50")
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_path"] == tensorrt.ENGINE_CACHE
    assert tensorrt.switch(repository, enable=True) == []  # idempotent
    assert set(tensorrt.switch(repository, enable=False)) == set(changed)
    assert {p: p.read_text() for p in before} == before
    assert tensorrt.switch(repository, enable=False) == []


def test_tensorrt_switch_keeps_other_accelerators(tmp_path: Path) -> None:
    config = read_config(MODEL_REPOSITORY / "resnet50")
    config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="other")
    on = tensorrt.switched(config, enable=True)
    names = [a.name for a in on.optimization.execution_accelerators.gpu_execution_accelerator]
    assert names == ["other", "tensorrt"]
    assert tensorrt.switched(on, enable=False) == config


def test_picmetric_tensorrt_command_on_a_copy_of_the_repository(tmp_path: Path) -> None:
    repository = copy_models(MODELS, tmp_path / "repository")
    before = (repository / "yolov3_backbone" / "config.pbtxt").read_text()
    for state in ("on", "off"):
        command = [sys.executable, "-m", "picmetric", "tensorrt", state]
        result = subprocess.run(
            [*command, "--repository", str(repository)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "config(s) changed" in result.stderr
        optimization = read_config(repository / "yolov3_backbone").optimization
        assert len(optimization.execution_accelerators.gpu_execution_accelerator) == (state == "on")
    assert (repository / "yolov3_backbone" / "config.pbtxt").read_text() == before
