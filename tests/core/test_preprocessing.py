"""core/preprocessing.py's input sizes agree with the committed Triton configs, which Triton
reads (parsed with protobuf: core/model_config.py)."""

from __future__ import annotations

import numpy as np

from core.model_config import parameter, read_config, square_image_size
from core.paths import MODEL_REPOSITORY
from core.preprocessing import RESNET50_INPUT_SIZE, YOLOV3_INPUT_SIZE, resize_for_resnet50


def _warmup_sizes(model: str) -> list[int]:
    config = read_config(MODEL_REPOSITORY / model)
    return [
        warmup.inputs["image"].dims[0] for warmup in config.model_warmup if "image" in warmup.inputs
    ]


def test_resnet50_input_size_is_the_configs() -> None:
    assert square_image_size(read_config(MODEL_REPOSITORY / "resnet50")) == RESNET50_INPUT_SIZE
    assert _warmup_sizes("resnet50") == [RESNET50_INPUT_SIZE]


def test_yolov3_input_size_is_the_configs() -> None:
    """Unless `picmetric convert yolov3 --size N` rewrote the committed configs: convert back
    with --size 416 (the gateway reads the served size from Triton either way)."""
    for model in ("yolov3", "yolov3_backbone"):
        assert square_image_size(read_config(MODEL_REPOSITORY / model)) == YOLOV3_INPUT_SIZE
    assert _warmup_sizes("yolov3_backbone") == [YOLOV3_INPUT_SIZE]
    postprocess = read_config(MODEL_REPOSITORY / "yolov3_postprocess")
    assert int(parameter(postprocess, "input_size")) == YOLOV3_INPUT_SIZE


def test_resize_for_resnet50_gives_the_configs_shape() -> None:
    image = resize_for_resnet50(np.zeros((30, 50, 3), np.uint8))
    assert image.shape == (RESNET50_INPUT_SIZE, RESNET50_INPUT_SIZE, 3)
    assert resize_for_resnet50(np.zeros((30, 50, 3), np.uint8), 96).shape == (96, 96, 3)
