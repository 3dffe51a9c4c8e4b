"""The YOLOv3 oracle: OpenCV's own darknet importer (`cv2.dnn.readNetFromDarknet`), written by
no one here, on the same .cfg and .weights files the exporter reads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class OpenCVDarknet:
    """Candidates as the exported backbone returns them: boxes [N, 4] (x_min, y_min, x_max,
    y_max in input pixels) and scores [N, classes] = objectness x class probability.

    OpenCV's region layer zeroes class scores at or below its `thresh` (0.2 unless the cfg says
    otherwise), so `scores` is only comparable above `score_floor`."""

    score_floor = 0.2

    def __init__(self, cfg: Path, weights: Path) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.enableWinograd(False)  # exact convolutions: the oracle should not add error
        self.outputs = self.net.getUnconnectedOutLayersNames()

    def candidates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`image`: a letterboxed RGB uint8 [S, S, 3], exactly what Triton receives."""
        size = image.shape[0]
        self.net.setInput(cv2.dnn.blobFromImage(image, 1 / 255.0, swapRB=False, crop=False))
        rows = np.concatenate(self.net.forward(self.outputs))
        centre, wh = rows[:, 0:2] * size, rows[:, 2:4] * size
        boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        return boxes, rows[:, 5:]


def opencv_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-wise NMS with OpenCV's `NMSBoxesBatched` over every (box, class) pair above the
    threshold, best `max_detections` kept: boxes [K, 4], scores [K], classes [K]."""
    rows, classes = np.nonzero(scores > score_threshold)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    picked = boxes[rows]
    xywh = np.concatenate([picked[:, :2], picked[:, 2:] - picked[:, :2]], axis=1)
    values = scores[rows, classes]
    keep = np.asarray(
        cv2.dnn.NMSBoxesBatched(
            xywh.astype(np.float64).tolist(),
            values.astype(np.float64).tolist(),
            classes.tolist(),
            score_threshold,
            iou_threshold,
        ),
        dtype=np.int64,
    ).reshape(-1)
    keep = keep[np.argsort(-values[keep], kind="stable")][:max_detections]
    return picked[keep], values[keep], classes[keep].astype(np.int32)


def assert_same_detections(
    got: tuple[np.ndarray, np.ndarray, np.ndarray],
    want: tuple[np.ndarray, np.ndarray, np.ndarray],
    score_threshold: float,
    min_iou: float = 0.99,
    score_atol: float = 1e-3,
) -> None:
    """Every detection (boxes, scores, classes) of one side has a partner on the other: same
    class, IoU > `min_iou`, scores within `score_atol`. Detections within `score_atol` of the
    threshold may be missing on the other side (float32 noise decides them)."""
    for mine, theirs, label in ((got, want, "extra"), (want, got, "missing")):
        for box, score, cls in zip(*mine, strict=True):
            if score <= score_threshold + score_atol:
                continue
            same = np.nonzero(theirs[2] == cls)[0]
            partners = [
                i
                for i in same
                if _iou(box, theirs[0][i]) > min_iou and abs(theirs[1][i] - score) < score_atol
            ]
            assert partners, f"{label} detection: class {cls}, score {score:.4f}, box {box}"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    low, high = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(high - low, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0 else 0.0
