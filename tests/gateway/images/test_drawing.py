"""Detections drawn on the photo, and faces blurred for privacy (gateway/images/drawing.py)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from skimage import data

from gateway.images import drawing
from gateway.results import Box, DetectedObject, Face, Results

# The astronaut's face as MTCNN finds it (README's example answer).
FACE = Face.of(
    0.9995,
    (180.14, 64.92, 264.81, 172.24),
    [(203.62, 100.35), (245.9, 102.74), (224.58, 126.28), (201.44, 138.8), (244.35, 140.58)],
)
PERSON = DetectedObject(label="person", confidence=0.9, box=Box.of((40, 20, 480, 511)))


def _sharpness(rgb: np.ndarray) -> float:
    """High-frequency energy: the variance of the Laplacian of the grey image."""
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_draw_marks_boxes_and_landmarks_where_the_results_say() -> None:
    photo = data.astronaut()
    drawn = drawing.draw(photo, Results(yolov3=[PERSON], mtcnn=[FACE]))
    assert drawn.shape == photo.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, photo)
    changed = np.any(drawn != photo, axis=2)
    for x, y in FACE.keypoints.values():  # each landmark dot
        assert tuple(drawn[round(y), round(x)]) == drawing.LANDMARK_COLOUR
    assert tuple(drawn[120, 180]) == drawing.FACE_COLOUR  # the face box's left edge
    assert tuple(drawn[300, 480]) == drawing.OBJECT_COLOUR  # the person box's right edge
    assert not changed[300, 300]  # inside the person, away from every mark
    assert changed[110:130, 180:265].any()


def test_blur_faces_removes_the_detail_of_every_face_only() -> None:
    photo = data.astronaut()
    blurred = photo.copy()
    drawing.blur_faces(blurred, Results(mtcnn=[FACE]))
    face = (slice(65, 172), slice(181, 264))
    assert _sharpness(blurred[face]) < 0.1 * _sharpness(photo[face])
    outside = (slice(300, 400), slice(300, 400))
    np.testing.assert_array_equal(blurred[outside], photo[outside])
    drawn = drawing.draw(photo, Results(mtcnn=[FACE]), blur=True)  # blurred under the marks
    assert tuple(drawn[100, 230]) == tuple(blurred[100, 230]) != tuple(photo[100, 230])


def test_jpeg_is_a_decodable_image_of_the_same_size() -> None:
    photo = data.astronaut()
    encoded = drawing.jpeg(photo.copy())  # turned to BGR in place
    decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR_RGB)
    assert decoded.shape == photo.shape
    assert np.abs(decoded.astype(int) - photo).mean() < 4


def test_blurring_a_face_as_large_as_the_photo_is_bounded_work() -> None:
    """A 3000 px face in a 12 MP photo blurs in seconds (at its own size, sigma 750: minutes),
    as strongly as a small face's."""
    photo = np.random.default_rng(3).integers(0, 256, (3000, 4000, 3), np.uint8)
    face = Face.of(0.99, (500, 0, 3499, 2999), [(1000 + 500 * i, 1500) for i in range(5)])
    blurred = photo.copy()
    started = time.perf_counter()
    drawing.blur_faces(blurred, Results(mtcnn=[face]))
    assert time.perf_counter() - started < 5
    region = (slice(0, 3000), slice(500, 3500))
    assert _sharpness(blurred[region]) < 0.01 * _sharpness(photo[region])


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (2, 20000)])
def test_drawing_a_strip_of_pixels_stays_within_it(shape: tuple[int, int]) -> None:
    """Boxes, labels and landmarks on a photo one or two pixels across: drawn clipped, without
    error, the labels' size from the short side."""
    photo = np.zeros((*shape, 3), np.uint8)
    height, width = shape
    box = (0.0, 0.0, float(width), float(height))
    found = Results(
        yolov3=[DetectedObject(label="person", confidence=0.9, box=Box.of(box))],
        mtcnn=[Face.of(0.99, box, [(width / 2, height / 2)] * 5)],
    )
    drawn = drawing.draw(photo, found, blur=True)
    assert drawn.shape == photo.shape and drawn.any()


def test_a_label_at_the_right_edge_is_moved_inside_the_photo() -> None:
    """A box at the photo's right edge: its name tab ends at the edge instead of being cut."""
    photo = np.zeros((100, 300, 3), np.uint8)
    edge = DetectedObject(label="dining table", confidence=0.9, box=Box.of((280, 50, 299, 99)))
    drawn = drawing.draw(photo, Results(yolov3=[edge]))
    tab = np.all(drawn[30:50] == drawing.OBJECT_COLOUR, axis=2)  # the tab above the box
    columns = np.flatnonzero(tab.any(axis=0))
    assert columns.min() < 200 and columns.max() == 299  # text of ~120 px, wholly inside


def test_blurred_faces_carry_no_marks_and_random_weights_a_banner() -> None:
    photo = data.astronaut()
    drawn = drawing.draw(photo, Results(mtcnn=[FACE]), blur=True, random_models=["yolov3"])
    for x, y in FACE.keypoints.values():
        assert tuple(drawn[round(y), round(x)]) != drawing.LANDMARK_COLOUR
    assert tuple(drawn[120, 180]) != drawing.FACE_COLOUR  # no face box edge
    assert tuple(drawn[1, 5]) == drawing.WARNING_COLOUR  # the banner's top-left corner


def test_a_label_wider_than_the_photo_is_drawn_smaller_not_cut() -> None:
    """The random-weights banner (about 300 px of text at its usual size) on a 160 px
    thumbnail: drawn smaller, its text ending inside the photo, not run past the right edge."""

    def ink(width: int) -> tuple[np.ndarray, np.ndarray]:
        photo = np.full((120, width, 3), 255, np.uint8)
        drawn = drawing.draw(photo, Results(), random_models=["resnet50", "yolov3"])
        black = np.all(drawn[:30] < 80, axis=2)  # the banner's text
        return np.flatnonzero(black.any(axis=1)), np.flatnonzero(black.any(axis=0))

    wide_rows, wide_columns = ink(400)
    assert wide_columns.max() < 330  # the whole text fits 400 px
    rows, columns = ink(160)
    assert len(rows) < 0.7 * len(wide_rows), "the text is drawn smaller"
    assert columns.max() <= 160 - 3 and columns.min() <= 4
