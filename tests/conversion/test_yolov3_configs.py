"""`picmetric convert yolov3 --size N` sets the input size of the three YOLOv3 Triton configs
through protobuf (conversion/yolov3.py `set_input_size`), on copies of the committed configs."""

from __future__ import annotations

from pathlib import Path

from conversion import yolov3
from core.model_config import input_dims, parameter, read_config
from core.paths import MODEL_REPOSITORY
from core.preprocessing import YOLOV3_INPUT_SIZE
from picmetric.repository import copy_models


def _candidates(size: int) -> int:
    """yolov3.cfg's candidate boxes: 3 anchors per cell of its stride 32, 16 and 8 grids."""
    return 3 * sum((size // stride) ** 2 for stride in (32, 16, 8))


def _sizes(repository: Path) -> dict[str, object]:
    backbone = read_config(repository / "yolov3_backbone")
    return {
        "yolov3": input_dims(read_config(repository / "yolov3"), "image"),
        "yolov3_backbone": input_dims(backbone, "image"),
        "warmup": list(backbone.model_warmup[0].inputs["image"].dims),
        "input_size": parameter(read_config(repository / "yolov3_postprocess"), "input_size"),
        "outputs": [list(t.dims) for t in backbone.output],
    }


def test_set_input_size_changes_the_sizes_and_nothing_else(tmp_path: Path) -> None:
    repository = copy_models(yolov3.SIZED_CONFIGS, tmp_path)
    committed = {m: (repository / m / "config.pbtxt").read_text() for m in yolov3.SIZED_CONFIGS}
    yolov3.set_input_size(repository, 608, _candidates(608))
    assert _sizes(repository) == {
        "yolov3": [608, 608, 3],
        "yolov3_backbone": [608, 608, 3],
        "warmup": [608, 608, 3],
        "input_size": "608",
        "outputs": [[22743, 4], [22743, 80]],
    }
    for model in yolov3.SIZED_CONFIGS:
        back = yolov3.sized(
            read_config(repository / model), YOLOV3_INPUT_SIZE, _candidates(YOLOV3_INPUT_SIZE)
        )
        assert back == read_config(MODEL_REPOSITORY / model)
    yolov3.set_input_size(repository, YOLOV3_INPUT_SIZE, _candidates(YOLOV3_INPUT_SIZE))
    assert {m: (repository / m / "config.pbtxt").read_text() for m in committed} == committed


def test_set_input_size_leaves_other_inputs_and_parameters_alone() -> None:
    postprocess = read_config(MODEL_REPOSITORY / "yolov3_postprocess")
    resized = yolov3.sized(postprocess, 320, _candidates(320))
    assert [list(t.dims) for t in resized.input] == [list(t.dims) for t in postprocess.input]
    assert parameter(resized, "input_size") == "320"
    assert parameter(resized, "score_threshold") == parameter(postprocess, "score_threshold")


def test_set_input_size_in_a_repository_with_the_backbone_only(tmp_path: Path) -> None:
    repository = copy_models(["yolov3_backbone"], tmp_path)
    yolov3.set_input_size(repository, 320, _candidates(320))
    assert input_dims(read_config(repository / "yolov3_backbone"), "image") == [320, 320, 3]
    assert sorted(p.name for p in repository.iterdir()) == ["yolov3_backbone"]
