"""The yolov3_postprocess maths (model_repository/yolov3_postprocess/1/model.py) and the shared
letterbox, without Triton."""

from __future__ import annotations

import numpy as np
import pytest

from core.preprocessing import LETTERBOX_FILL, letterbox, letterbox_geometry
from tests.utils.yolov3 import postprocess_module

post = postprocess_module()
SETTINGS = post.Settings(
    score_threshold=0.25, iou_threshold=0.45, max_detections=100, pre_nms_top_k=1000
)
SHAPES = [(1, 1), (1, 5000), (5000, 1), (416, 416), (480, 640), (640, 480), (333, 777), (17, 29)]


def _candidates(rows: list[tuple[list[float], int, float]], classes: int = 80):
    """Backbone-style candidates: boxes [N, 4] and scores [N, classes] with one class scored."""
    boxes = np.array([box for box, _, _ in rows], np.float32).reshape(-1, 4)
    scores = np.zeros((len(rows), classes), np.float32)
    for i, (_, cls, score) in enumerate(rows):
        scores[i, cls] = score
    return boxes, scores


@pytest.mark.parametrize("size", [320, 416, 608])
def test_letterbox_geometry_agrees_with_postprocess_model(size: int) -> None:
    """The client's letterbox and the model's undo must be the same arithmetic."""
    rng = np.random.default_rng(size)
    shapes = SHAPES + [tuple(int(v) for v in rng.integers(1, 3000, 2)) for _ in range(300)]
    boxes = rng.uniform(-50, size + 50, (20, 4)).astype(np.float32)
    for height, width in shapes:
        client = letterbox_geometry(height, width, size)
        assert post.letterbox_geometry(height, width, size) == (
            client.new_height,
            client.new_width,
            client.top,
            client.left,
        )
        np.testing.assert_array_equal(
            post.undo_letterbox(boxes, height, width, size), client.to_original(boxes)
        )


def test_letterbox_keeps_aspect_and_centres_on_grey() -> None:
    image = np.full((100, 200, 3), 7, np.uint8)
    out, geometry = letterbox(image, 416)
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    placed = (geometry.new_height, geometry.new_width, geometry.top, geometry.left)
    assert placed == (208, 416, 104, 0)
    assert (out[:104] == LETTERBOX_FILL).all() and (out[312:] == LETTERBOX_FILL).all()
    assert (out[104:312] == 7).all()
    corners = geometry.to_original(np.array([[0, 104, 416, 312]], np.float32))
    np.testing.assert_allclose(corners, [[0, 0, 200, 100]])


def test_undo_letterbox_clips_to_the_image() -> None:
    boxes = np.array([[-30, 50, 500, 120]], np.float32)
    np.testing.assert_allclose(
        post.undo_letterbox(boxes, 100, 200, 416), [[0, 0, 200, 16 * 100 / 208]], rtol=1e-6
    )


def test_nms_suppresses_overlaps_within_a_class_only() -> None:
    boxes, scores = _candidates(
        [
            ([0, 0, 100, 100], 0, 0.9),
            ([5, 5, 105, 105], 0, 0.8),
            ([5, 5, 105, 105], 1, 0.7),
            ([200, 200, 250, 250], 0, 0.6),
        ]
    )
    (result,) = post.detect([boxes], [scores], [(416, 416)], [SETTINGS], 416)
    np.testing.assert_array_equal(result.classes, [0, 1, 0])
    np.testing.assert_allclose(result.scores, [0.9, 0.7, 0.6])
    np.testing.assert_allclose(result.boxes[0], [0, 0, 100, 100])


def test_nms_keeps_a_box_at_exactly_the_iou_threshold() -> None:
    """IoU 0.5 exactly: suppressed only above the threshold (darknet and OpenCV agree)."""
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 50]], np.float32)
    keep = post.nms(boxes, np.array([0.9, 0.8]), np.zeros(2, np.int64), 0.5)
    np.testing.assert_array_equal(keep, [0, 1])
    keep = post.nms(boxes, np.array([0.9, 0.8]), np.zeros(2, np.int64), 0.49)
    np.testing.assert_array_equal(keep, [0])


def test_nms_of_one_image_ignores_a_huge_box_in_another() -> None:
    """A finite but huge candidate (exp of a large size logit) in image 0 leaves the NMS of
    image 1 as it is alone."""
    huge, huge_scores = _candidates([([0, 0, 1e30, 1e30], 0, 0.95), ([0, 0, 100, 100], 0, 0.5)])
    boxes, scores = _candidates(
        [([0, 0, 100, 100], 3, 0.9), ([5, 5, 105, 105], 3, 0.8), ([5, 5, 105, 105], 4, 0.7)]
    )
    shapes, settings = [(416, 416)] * 2, [SETTINGS] * 2
    alone = post.detect([boxes], [scores], shapes[:1], settings[:1], 416)[0]
    first, second = post.detect([huge, boxes], [huge_scores, scores], shapes, settings, 416)
    np.testing.assert_array_equal(second.classes, [3, 4])
    for name in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(getattr(second, name), getattr(alone, name))
    np.testing.assert_array_equal(first.classes, [0, 0])  # IoU ~1e-56: both stay
    np.testing.assert_allclose(first.boxes, [[0, 0, 416, 416], [0, 0, 100, 100]])


def test_every_class_above_the_threshold_is_a_candidate() -> None:
    """As in darknet, one box scoring high for two classes yields two detections."""
    boxes = np.array([[10, 10, 50, 50]], np.float32)
    scores = np.zeros((1, 80), np.float32)
    scores[0, [3, 7]] = [0.6, 0.3]
    scores[0, 9] = 0.25  # not above the threshold
    (result,) = post.detect([boxes], [scores], [(416, 416)], [SETTINGS], 416)
    np.testing.assert_array_equal(result.classes, [3, 7])


def test_detect_handles_images_together_each_with_its_settings() -> None:
    """Same candidates, different images, thresholds and shapes: results stay apart."""
    boxes, scores = _candidates(
        [([100, 100, 200, 200], 2, 0.9), ([100, 100, 200, 200], 5, 0.4), ([0, 0, 10, 10], 2, 0.3)]
    )
    strict = SETTINGS.override({"score_threshold": 0.5})
    few = SETTINGS.override({"max_detections": 1})
    shapes = [(416, 416), (208, 416), (416, 832)]
    results = post.detect([boxes] * 3, [scores] * 3, shapes, [SETTINGS, strict, few], 416)
    assert [r.classes.tolist() for r in results] == [[2, 5, 2], [2], [2]]
    np.testing.assert_allclose(results[1].boxes[0], [100, 0, 200, 96])  # top 104 is y = 0
    np.testing.assert_allclose(results[2].boxes[0], [200, 0, 400, 192])


def test_detect_with_no_candidates_returns_empty_arrays() -> None:
    boxes, scores = np.zeros((10, 4), np.float32), np.zeros((10, 80), np.float32)
    (result,) = post.detect([boxes], [scores], [(10, 10)], [SETTINGS], 416)
    assert result.boxes.shape == (0, 4) and result.scores.shape == (0,)
    assert result.classes.dtype == np.int32
    assert post.detect([], [], [], [], 416) == []


def test_non_finite_boxes_are_never_detections() -> None:
    boxes, scores = _candidates([([0, 0, np.inf, 10], 0, 0.9), ([0, 0, 10, 10], 1, 0.8)])
    (result,) = post.detect([boxes], [scores], [(416, 416)], [SETTINGS], 416)
    np.testing.assert_array_equal(result.classes, [1])


def test_pre_nms_top_k_keeps_the_best_candidates() -> None:
    rows = [([i * 20, 0, i * 20 + 10, 10], 0, 0.3 + i / 100) for i in range(10)]
    boxes, scores = _candidates(rows)
    top3 = SETTINGS.override({"pre_nms_top_k": 3})
    (result,) = post.detect([boxes], [scores], [(416, 416)], [top3], 416)
    np.testing.assert_allclose(result.scores, [0.39, 0.38, 0.37])


def test_pad_detections_marks_padding_with_class_minus_one() -> None:
    one = post.Detections(np.ones((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, "i4"))
    none = post.Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    )
    boxes, scores, classes = post.pad_detections([one, none])
    assert boxes.shape == (2, 1, 4) and classes.tolist() == [[0], [-1]] and scores[1, 0] == 0


def test_settings_from_config_and_request_overrides() -> None:
    config = {
        "score_threshold": "0.3",
        "iou_threshold": "0.5",
        "max_detections": "7",
        "pre_nms_top_k": "50",
    }
    settings = post.Settings.from_config(config)
    assert settings == post.Settings(0.3, 0.5, 7, 50)
    assert settings.override({"max_detections": 3}).max_detections == 3
    assert settings.override('{"max_detections": "4.0"}').max_detections == 4  # Triton's JSON
    assert settings.override({"score_threshold": "0.6"}).score_threshold == 0.6
    for bad in (
        {"score_threshold": 1.5},
        {"iou_threshold": 0},
        {"max_detections": "many"},
        {"max_detections": True},
        {"max_detections": 2.5},
        {"pre_nms_top_k": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
            settings.override(bad)
    with pytest.raises(ValueError, match="missing"):
        post.Settings.from_config({"score_threshold": "0.3"})


def test_settings_override_refuses_an_unknown_name_naming_the_known_ones() -> None:
    """As MTCNN does: a misspelt parameter fails its request instead of being ignored."""
    with pytest.raises(ValueError, match="Unknown parameter 'max_detection'; the parameters are"):
        SETTINGS.override({"max_detections": 3, "max_detection": 3})


def test_parse_shapes_rejects_non_positive_sizes() -> None:
    assert post.parse_shapes(np.array([[480, 640]], np.int32)) == [(480, 640)]
    with pytest.raises(ValueError, match="positive"):
        post.parse_shapes(np.array([[0, 640]], np.int32))


def test_check_candidates_rejects_boxes_and_scores_that_disagree() -> None:
    boxes, scores = np.zeros((2, 10, 4), np.float32), np.zeros((2, 10, 80), np.float32)
    post.check_candidates(boxes, scores, 2)
    with pytest.raises(ValueError, match="same batch and candidate counts"):
        post.check_candidates(boxes[:, :7], scores, 2)
    with pytest.raises(ValueError, match="same batch and candidate counts"):
        post.check_candidates(boxes[:1], scores, 1)
    with pytest.raises(ValueError, match=r"\[batch, N, 4\]"):
        post.check_candidates(boxes[0], scores, 2)
    with pytest.raises(ValueError, match="one \\[height, width\\] per image"):
        post.check_candidates(boxes, scores, 1)
