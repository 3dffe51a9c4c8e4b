"""The TensorRT switch in picmetric/tensorrt.py: it adds the FP16 accelerator with an engine cache
to the onnxruntime models' config.pbtxt and removes it exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.paths import MODEL_REPOSITORY
from picmetric import tensorrt


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
