"""MTCNN test helpers: the cascade module, the oracle (the mtcnn package), test images, the
tritonclient call and the parity check."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

from picmetric.repository import load_model_module

MODEL = "mtcnn"
# The parity tolerances against the mtcnn package.
MIN_IOU = 0.95
MAX_SCORE_DIFF = 0.01
MAX_LANDMARK_PX = 2.0


@functools.cache
def cascade(module: str = "cascade") -> ModuleType:
    """model_repository/mtcnn/1/cascade.py, or another `module` of that folder (pyramid, boxes,
    parameters, common), imported without Triton. Take each name from the module that defines it;
    patch a constant in the module that uses it (a `from .x import NAME` is a copy)."""
    return load_model_module(MODEL, module)


@dataclass(frozen=True)
class Detections:
    """boxes [n, 4] (x_min, y_min, x_max, y_max), scores [n], landmarks [n, 5, 2] (x, y)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def rgb(image: np.ndarray) -> np.ndarray:
    """A grayscale photo as RGB (what a client does before sending it)."""
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]


def photos() -> dict[str, np.ndarray]:
    """Real photos from scikit-image: two with a face, the rest without."""
    from skimage import data

    names = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field")
    return {name: rgb(getattr(data, name)()) for name in names}


def faces() -> list[np.ndarray]:
    """The astronaut's face (180x170) and the cameraman's (150x125), RGB."""
    from skimage import data

    return [data.astronaut()[30:210, 140:310], rgb(data.camera())[80:230, 165:290]]


def collage() -> np.ndarray:
    """1200x800: the astronaut's and the cameraman's faces at seven sizes (about 35 to 190 px)
    pasted on the coffee photo."""
    from skimage import data

    canvas = cv2.resize(data.coffee(), (1200, 800), interpolation=cv2.INTER_AREA)
    sources = faces()
    x = y = row = 10
    for i, scale in enumerate((0.45, 1.0, 1.7, 0.6, 1.3, 2.0, 0.8)):
        face = sources[i % 2]
        size = (int(face.shape[1] * scale), int(face.shape[0] * scale))
        face = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
        height, width = face.shape[:2]
        if x + width > canvas.shape[1]:
            x, y, row = 10, y + row + 10, 0
        canvas[y : y + height, x : x + width] = face
        x, row = x + width + 10, max(row, height)
    return canvas


def oracle(detector: Any, image: np.ndarray, **parameters: float) -> Detections:
    """`mtcnn.MTCNN().detect_faces()` with unrounded numbers (numpy output, xyxy boxes)."""
    rows = detector.detect_faces(image, box_format="xyxy", output_type="numpy", **parameters)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
    landmarks = np.stack([rows[:, 6:11], rows[:, 11:16]], axis=-1)
    return Detections(rows[:, 1:5], rows[:, 5], landmarks)


@contextlib.contextmanager
def levels_within_pnet() -> Iterator[None]:
    """The package's pyramid without the levels smaller than PNet's 12-px window, the cascade's
    one deviation in the pyramid (cascade.py): with a min_face_size much above 20 px the package
    makes such levels and fails ("The convolution operation resulted in an empty output"); where
    it runs, it makes none, so this changes none of its answers."""
    from mtcnn.stages import stage_pnet

    made = stage_pnet.build_scale_pyramid
    window = cascade("pyramid").PNET_WINDOW

    def within(width: int, height: int, *args: Any, **kwargs: Any) -> np.ndarray:
        scales = made(width, height, *args, **kwargs)
        return scales[[min(int(height * s), int(width * s)) >= window for s in scales]]

    stage_pnet.build_scale_pyramid = within
    try:
        yield
    finally:
        stage_pnet.build_scale_pyramid = made


def infer(
    client: grpcclient.InferenceServerClient,
    image: np.ndarray,
    parameters: dict[str, Any] | None = None,
) -> Detections:
    """The `mtcnn` Triton model on one UINT8 RGB image."""
    inputs = [grpcclient.InferInput("image", list(image.shape), "UINT8")]
    inputs[0].set_data_from_numpy(np.ascontiguousarray(image, dtype=np.uint8))
    result = client.infer(MODEL, inputs, parameters=parameters)
    return Detections(
        result.as_numpy("boxes"), result.as_numpy("scores"), result.as_numpy("landmarks")
    )


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU matrix [len(a), len(b)] of (x_min, y_min, x_max, y_max) boxes."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def assert_same_faces(got: Any, want: Detections, label: str = "") -> None:
    """Same number of faces; each matched face: IoU > 0.95, score within 0.01, every landmark
    within 2 px. `got` has boxes, scores and landmarks (Detections or the cascade's Faces)."""
    n = len(got.scores)
    assert got.boxes.shape == (n, 4) and got.landmarks.shape == (n, 5, 2), label
    assert n == len(want), f"{label}: {n} faces, the mtcnn package finds {len(want)}"
    if not n:
        return
    overlaps = iou(got.boxes.astype(np.float64), want.boxes)
    for j in range(len(want)):
        i = int(np.argmax(overlaps[:, j]))
        assert overlaps[i, j] > MIN_IOU, f"{label}: face {j} IoU {overlaps[i, j]:.3f}"
        assert abs(got.scores[i] - want.scores[j]) < MAX_SCORE_DIFF, f"{label}: face {j} score"
        distance = np.linalg.norm(got.landmarks[i] - want.landmarks[j], axis=-1)
        assert distance.max() < MAX_LANDMARK_PX, f"{label}: face {j} landmarks off by {distance}"
        overlaps[i, :] = -1  # each detection matches one face only
