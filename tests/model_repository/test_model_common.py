"""common.py, the code the Python models share: one copy per model folder (Triton loads each
folder alone), so this checks the copies are the same file, and tests the code once, with an
oracle for IoU that shares nothing with it (pixels counted on a grid)."""

from __future__ import annotations

import numpy as np
import pytest

from core.paths import MODEL_REPOSITORY, PROJECT_ROOT
from picmetric.repository import load_model_module

MODELS = ("mtcnn", "yolov3_postprocess")
common = load_model_module(MODELS[0], "common")


def test_every_python_model_has_the_same_common_py() -> None:
    """Every model folder with Python code carries common.py, byte for byte the same."""
    folders = sorted(p.parent for p in MODEL_REPOSITORY.glob("*/1/model.py"))
    assert [f.parent.name for f in folders] == sorted(MODELS)
    copies = {f.parent.name: (f / "common.py").read_bytes() for f in folders}
    assert len(set(copies.values())) == 1, f"common.py differs between {sorted(copies)}"
    for model in MODELS:  # each model imports its own copy
        model_common = load_model_module(model, "common")
        assert model_common.__file__ == str(MODEL_REPOSITORY / model / "1" / "common.py")


def test_every_python_model_is_type_checked() -> None:
    """mypy reaches each model folder through a link in typecheck/ (pyproject.toml says why)."""
    for model in MODELS:
        link = PROJECT_ROOT / "typecheck" / f"triton_{model}"
        assert link.resolve() == (MODEL_REPOSITORY / model / "1").resolve(), link


def _pixel_overlap(a: np.ndarray, b: np.ndarray, method: str) -> float:
    """Oracle: boxes on integer coordinates drawn on a grid, overlap counted in pixels."""
    grid = np.zeros((2, 64, 64), bool)
    for mask, (x1, y1, x2, y2) in zip(grid, (a, b), strict=True):
        mask[int(y1) : int(y2), int(x1) : int(x2)] = True
    inter = int(np.sum(grid[0] & grid[1]))
    divisor = int(np.sum(grid[0] | grid[1])) if method == "union" else int(grid.sum((1, 2)).min())
    return inter / divisor if divisor else 0.0


@pytest.mark.parametrize("method", ["union", "min"])
def test_overlap_matches_pixels_counted_on_a_grid(method: str) -> None:
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 64, (200, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float64)
    got = common.overlap(boxes[:100], boxes[100:], method)
    want = [[_pixel_overlap(a, b, method) for b in boxes[100:]] for a in boxes[:100]]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_overlap_of_empty_boxes_is_zero() -> None:
    empty = np.array([[5.0, 5.0, 5.0, 9.0]])
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert common.overlap(empty, empty).tolist() == [[0.0]]
    assert common.overlap(empty, box, "min").tolist() == [[0.0]]


def test_parse_parameters_reads_json_and_numbers_of_each_kind() -> None:
    kinds = {"threshold": float, "count": int}
    assert common.parse_parameters('{"threshold": "0.5", "count": 3}', kinds) == {
        "threshold": 0.5,
        "count": 3,
    }
    assert common.parse_parameters("", kinds) == {}
    assert common.parse_parameters({"count": "7"}, kinds, complete=False) == {"count": 7}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"treshold": 0.5}, "Unknown parameter 'treshold'; the parameters are: count, threshold."),
        ({"threshold": "high"}, "Parameter 'threshold' must be a number, got 'high'."),
        ({"threshold": [1]}, "Parameter 'threshold' must be a number, got [1]."),
        ({"threshold": "inf"}, "Parameter 'threshold' must be a finite number, got 'inf'."),
        ({"threshold": True}, "Parameter 'threshold' must be a finite number, got True."),
        ({"count": 2.5}, "Parameter 'count' must be a whole number, got 2.5."),
        ("[1, 2]", "Parameters must be a JSON object, got [1, 2]."),
        ("{", "Parameters are not JSON"),
    ],
)
def test_parse_parameters_refuses_with_a_message_naming_the_problem(
    values: object, message: str
) -> None:
    with pytest.raises(common.ParameterError) as error:
        common.parse_parameters(values, {"threshold": float, "count": int})
    assert str(error.value).startswith(message)


def test_parse_parameters_from_config_needs_every_name() -> None:
    with pytest.raises(common.ParameterError, match=r"\['count'\] are missing"):
        common.parse_parameters({"threshold": "0.5"}, {"threshold": float, "count": int}, True)
