"""The MTCNN cascade's box maths (model_repository/mtcnn/1/boxes.py), without Triton: proposals,
NMS against the mtcnn package, regression, squaring, landmarks, clipping, crops against
TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from tests.utils.mtcnn_faces import cascade

mtcnn_boxes = cascade("boxes")
mtcnn_cascade = cascade("cascade")


def test_pnet_proposals_window_regression_and_scale() -> None:
    """A face cell at (row 3, column 5) is the window [2x + 1, 2x + 12] at the level's scale."""
    probabilities = np.zeros((2, 6, 8), np.float32)
    probabilities[:, 3, 5] = (0.1, 0.9)
    probabilities[:, 1, 1] = (0.5, 0.5)  # below the threshold
    offsets = np.zeros((4, 6, 8), np.float32)
    offsets[:, 3, 5] = (0.1, 0.0, -0.1, 0.0)
    boxes = mtcnn_boxes.pnet_proposals([offsets], [probabilities], scale=0.5, threshold=0.6)
    x1, y1, x2, y2 = 11 + 1.1, 7, 22 - 1.1, 18
    np.testing.assert_allclose(boxes, [[x1 / 0.5, y1 / 0.5, x2 / 0.5, y2 / 0.5, 0.9]], rtol=1e-6)


def test_pnet_proposals_keep_the_best_top_k() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, (2, 20, 30)).astype(np.float32)
    offsets = rng.uniform(-0.2, 0.2, (4, 20, 30)).astype(np.float32)
    every = mtcnn_boxes.pnet_proposals([offsets], [probabilities], 0.5, threshold=0, top_k=600)
    best = mtcnn_boxes.pnet_proposals([offsets], [probabilities], 0.5, threshold=0, top_k=50)
    assert len(every) == 600 and len(best) == 50
    np.testing.assert_array_equal(best, every[:50])
    assert np.all(np.diff(best[:, 4]) <= 0)


@pytest.mark.parametrize("top_k", [50, 600])
def test_pnet_proposals_from_bands_are_the_whole_levels(top_k: int) -> None:
    """A level's output in uneven bands of rows (as PNet answers a large level) gives the same
    boxes, byte for byte, as the whole level: the best `top_k` of all bands, not of each."""
    rng = np.random.default_rng(3)
    probabilities = rng.uniform(0, 1, (2, 20, 30)).astype(np.float32)
    offsets = rng.uniform(-0.2, 0.2, (4, 20, 30)).astype(np.float32)
    whole = mtcnn_boxes.pnet_proposals([offsets], [probabilities], 0.5, 0.3, top_k)
    rows = [slice(0, 7), slice(7, 8), slice(8, 20)]
    bands = mtcnn_boxes.pnet_proposals(
        [offsets[:, r] for r in rows], [probabilities[:, r] for r in rows], 0.5, 0.3, top_k
    )
    assert len(whole) == min(top_k, int((probabilities[1] > 0.3).sum()))
    np.testing.assert_array_equal(bands, whole)


def test_pnet_proposals_none_above_threshold() -> None:
    boxes = mtcnn_boxes.pnet_proposals([np.zeros((4, 2, 2))], [np.zeros((2, 2, 2))], 1.0, 0.6)
    assert boxes.shape == (0, 5)


def test_suppress_drops_boxes_overlapping_any_better_box_even_a_dropped_one() -> None:
    """The package's NMS: B overlaps A, C overlaps B only; greedy NMS would keep C, it does not."""
    a = [0, 0, 10, 10, 0.9]
    b = [3, 0, 13, 10, 0.8]
    c = [6, 0, 16, 10, 0.7]
    far = [50, 50, 60, 60, 0.6]
    kept = mtcnn_boxes.suppress(np.array([c, far, a, b], float), threshold=0.3)
    np.testing.assert_array_equal(kept, [a, far])


def test_suppress_min_method_divides_by_the_smaller_box() -> None:
    big = [0, 0, 10, 10, 0.9]
    inner = [0, 0, 5, 5, 0.8]  # IoU 0.25, overlap over the smaller box 1.0
    assert len(mtcnn_boxes.suppress(np.array([big, inner], float), 0.7, method="union")) == 2
    assert len(mtcnn_boxes.suppress(np.array([big, inner], float), 0.7, method="min")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("spread", ["dense", "wide"])
def test_suppress_matches_the_package_nms_also_in_chunks(
    monkeypatch: pytest.MonkeyPatch, spread: str
) -> None:
    """Boxes 5-60 px on 200x200 (most overlap), or 10-1500 px on 3000x3000 with whole-pixel
    left edges (ties) as PNet's levels give them across levels: chunks of boxes compared only
    with their neighbours in x still drop exactly the package's."""
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    rng = np.random.default_rng(1)
    if spread == "dense":
        xy, wh = rng.uniform(0, 200, (300, 2)), rng.uniform(5, 60, (300, 2))
    else:
        xy = rng.integers(0, 1000, (300, 2)).astype(float)
        wh = np.exp(rng.uniform(2.3, 7.3, (300, 1))) * rng.uniform(0.8, 1.2, (300, 2))
    boxes = np.concatenate([xy, xy + wh, rng.uniform(0, 1, (300, 1))], axis=1)
    for method in ("union", "min"):
        with_id = np.concatenate([np.zeros((300, 1)), boxes], axis=1)
        want = smart_nms_from_bboxes(with_id, threshold=0.5, method=method)[:, 1:]
        assert 10 < len(want) < 250, len(want)
        np.testing.assert_array_equal(mtcnn_boxes.suppress(boxes, 0.5, method), want)
        monkeypatch.setattr(mtcnn_boxes, "NMS_CHUNK", 7)
        np.testing.assert_array_equal(mtcnn_boxes.suppress(boxes, 0.5, method), want)
        monkeypatch.undo()


def test_square_keeps_the_centre_and_takes_the_longer_side() -> None:
    squared = mtcnn_boxes.square(np.array([[10.0, 20.0, 30.0, 60.0, 0.5]]))
    np.testing.assert_allclose(squared, [[0.0, 20.0, 40.0, 60.0, 0.5]])


def test_regress_scales_offsets_by_box_size_plus_one() -> None:
    boxes = np.array([[10.0, 10.0, 19.0, 29.0, 0.9]])
    moved = mtcnn_boxes.regress(boxes, np.array([[0.1, -0.1, 0.2, 0.0]]))
    np.testing.assert_allclose(moved, [[11.0, 8.0, 21.0, 29.0, 0.9]])


def test_place_landmarks_from_box_fractions() -> None:
    boxes = np.array([[10.0, 20.0, 19.0, 39.0, 1.0]])  # 10 x 20 with the +1
    fractions = np.array([[0.0, 0.5, 1.0, 0.2, 0.8, 0.0, 0.25, 0.5, 0.75, 1.0]])
    points = mtcnn_boxes.place_landmarks(fractions, boxes)
    want = [[9, 19], [14, 24], [19, 29], [11, 34], [17, 39]]
    np.testing.assert_allclose(points, [want])


def test_clip_boxes_to_the_image() -> None:
    clipped = mtcnn_boxes.clip_boxes(np.array([[-5.0, -1.0, 120.0, 50.0]]), height=40, width=100)
    np.testing.assert_allclose(clipped, [[0.0, 0.0, 99.0, 39.0]])


@pytest.mark.slow
def test_crop_and_resize_matches_tensorflow_with_outside_pixels_normalising_to_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three boxes in chunks of two, so that a chunk boundary is crossed."""
    import tensorflow as tf

    monkeypatch.setattr(mtcnn_boxes, "CROP_CHUNK", 2)

    image = np.random.default_rng(0).uniform(0, 255, (101, 77, 3)).astype(np.float32)
    boxes = np.array([[10.3, -5.2, 40.7, 30.1], [60, 80, 90, 120.5], [-10, -10, 200, 200]])
    normalised = (boxes[:, [1, 0, 3, 2]] / [101, 77, 101, 77]).astype(np.float32)
    for size in (mtcnn_cascade.RNET_SIZE, mtcnn_cascade.ONET_SIZE):
        want = tf.image.crop_and_resize(
            (image[None] - 127.5) / 128, normalised, np.zeros(3, np.int32), (size, size)
        ).numpy()
        got = (mtcnn_boxes.crop_and_resize(image, boxes, size).transpose(0, 2, 3, 1) - 127.5) / 128
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_outside_pixel_is_the_value_the_networks_normalise_to_zero() -> None:
    from conversion import mtcnn_onnx

    assert mtcnn_boxes.OUTSIDE_PIXEL == mtcnn_onnx.PIXEL_MEAN
