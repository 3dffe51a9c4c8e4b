"""Boxes through the cascade, as the mtcnn package computes them: PNet's proposals, NMS, box
regression, squaring, landmarks, clipping, and the crops RNet and ONet see.

The package's quirks are kept so results agree with it: PNet windows are `[2x + 1, 2x + 12]`
(and likewise in y) and regressed *before* NMS; NMS drops every box that overlaps any
higher-scored box by more than the threshold, even one that was itself dropped; IoU uses areas
`(x2 - x1) * (y2 - y1)`; crops follow `tf.image.crop_and_resize` with boxes divided by the image
size (not size - 1), and pixels outside the image are the value that normalises to 0 (127.5).
Boxes are rows [x1, y1, x2, y2, score, ...] in original image pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .common import overlap
from .pyramid import PNET_STRIDE, PNET_WINDOW

# The pixel value the networks' normalisation (p - 127.5) / 128 maps to 0: TensorFlow's
# crop_and_resize fills outside the (normalised) image with 0.
OUTSIDE_PIXEL = 127.5
# PNet proposals kept, best first, per level before that level's NMS (the package keeps them all,
# so `threshold_pnet=0` would make every PNet cell a box). The test photos stay far below (at most
# ~450 per level, on a collage of seven faces).
PNET_LEVEL_TOP_K = 2000
# Boxes per NMS step, neighbours in x: its temporaries are O(n * NMS_CHUNK) at worst (5 MB each
# for 5,000 boxes); on a 12 MP photo's proposals 128 was faster than 64 or 256.
NMS_CHUNK = 128
# Boxes cropped at a time: a chunk's float temporaries (a few hundred KB) stay in cache.
CROP_CHUNK = 64


def sort_by_score(boxes: np.ndarray) -> np.ndarray:
    """Rows [x1, y1, x2, y2, score, ...] by descending score (the package's argsort, reversed)."""
    return boxes[np.argsort(boxes[:, 4])[::-1]]


def pnet_proposals(
    offsets: Sequence[np.ndarray],
    probabilities: Sequence[np.ndarray],
    scale: float,
    threshold: float,
    top_k: int = PNET_LEVEL_TOP_K,
) -> np.ndarray:
    """Boxes [n, 5] (x1, y1, x2, y2, score) in original pixels from one level's PNet output in
    bands of rows, at least one, top to bottom (offsets [4, h, w] and probabilities [2, h, w]; one
    band may be the whole level), regressed, best first, at most `top_k`. The bands are not joined
    (a 12 MP photo's first level's maps are 26 MB): only each band's cells above `threshold` are
    taken, in the order of the whole level's rows."""
    found = []
    first_row = 0
    for offset, probability in zip(offsets, probabilities, strict=True):
        score = probability[1]
        ys, xs = np.nonzero(score > threshold)
        found.append((ys + first_row, xs, score[ys, xs], offset[:, ys, xs]))
        first_row += len(score)
    joined = (np.concatenate(parts, axis=-1) for parts in zip(*found, strict=True))
    ys, xs, scores, regression = joined
    if len(ys) > top_k:
        best = np.sort(np.argpartition(scores, len(ys) - top_k)[-top_k:])
        ys, xs, scores, regression = ys[best], xs[best], scores[best], regression[:, best]
    regression = regression.T.astype(np.float64)
    cell = PNET_WINDOW - 1
    left, top = xs * PNET_STRIDE + 1, ys * PNET_STRIDE + 1
    right, bottom = xs * PNET_STRIDE + PNET_WINDOW, ys * PNET_STRIDE + PNET_WINDOW
    boxes = np.stack(
        [
            left + regression[:, 0] * cell,
            top + regression[:, 1] * cell,
            right + regression[:, 2] * cell,
            bottom + regression[:, 3] * cell,
            scores.astype(np.float64),
        ],
        axis=1,
    ).reshape(-1, 5)
    boxes = sort_by_score(boxes)
    boxes[:, :4] /= scale
    return boxes


def suppress(
    boxes: np.ndarray, threshold: float, method: str = "union", sort: bool = True
) -> np.ndarray:
    """The package's NMS on rows [x1, y1, x2, y2, score, ...]: keep a box unless a box before it
    (higher score) overlaps it by more than `threshold` (at least 0, so only boxes that intersect
    count). Boxes are taken NMS_CHUNK at a time from left to right, each chunk against the boxes
    that reach into its columns only; memory stays O(n * NMS_CHUNK)."""
    if sort:
        boxes = sort_by_score(boxes)
    keep = np.ones(len(boxes), dtype=bool)
    left, right = boxes[:, 0], boxes[:, 2]
    by_left = np.argsort(left, kind="stable")
    sorted_left = left[by_left]
    for start in range(0, len(boxes), NMS_CHUNK):
        chunk = by_left[start : start + NMS_CHUNK]
        near = by_left[: np.searchsorted(sorted_left, right[chunk].max())]
        near = near[right[near] > left[chunk].min()]
        iou = overlap(boxes[near, :4], boxes[chunk, :4], method)
        earlier = near[:, None] < chunk[None, :]  # rows are in score order
        keep[chunk] = ~np.any((iou > threshold) & earlier, axis=0)
    return boxes[keep]


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (side = the longer side)."""
    boxes = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    boxes[:, 0] += width * 0.5 - side * 0.5
    boxes[:, 1] += height * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply RNet/ONet offsets [n, 4], in units of the box size (x2 - x1 + 1)."""
    boxes = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += offsets * np.stack([width, height, width, height], axis=1)
    return boxes


def place_landmarks(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """ONet's landmarks [n, 10] (five x, then five y, as box fractions) to pixels [n, 5, 2]."""
    width = boxes[:, 2:3] - boxes[:, 0:1] + 1
    height = boxes[:, 3:4] - boxes[:, 1:2] + 1
    xs = width * landmarks[:, 0:5] + boxes[:, 0:1] - 1
    ys = height * landmarks[:, 5:10] + boxes[:, 1:2] - 1
    return np.stack([xs, ys], axis=-1)


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip x to [0, width - 1] and y to [0, height - 1]."""
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    return boxes


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear crops [n, C, size, size] (channels first, as the networks take them) of boxes
    (x1, y1, x2, y2) from one HxWxC image of any numeric dtype, as `tf.image.crop_and_resize`
    samples them for the package (boxes divided by the image size), with OUTSIDE_PIXEL where a
    sample falls outside the image. Made CROP_CHUNK boxes at a time, in place."""
    height, width = image.shape[:2]
    normalised = (boxes[:, :4] / np.array([width, height, width, height])).astype(np.float32)
    ys = _sample_positions(normalised[:, 1], normalised[:, 3], height, size)
    xs = _sample_positions(normalised[:, 0], normalised[:, 2], width, size)
    y_valid = (ys >= 0) & (ys <= height - 1)
    x_valid = (xs >= 0) & (xs <= width - 1)
    top = np.clip(np.floor(ys), 0, height - 1).astype(np.intp)
    bottom = np.clip(np.ceil(ys), 0, height - 1).astype(np.intp)
    left = np.clip(np.floor(xs), 0, width - 1).astype(np.intp)
    right = np.clip(np.ceil(xs), 0, width - 1).astype(np.intp)
    y_lerp = (ys - np.floor(ys))[:, :, None, None]
    x_lerp = (xs - np.floor(xs))[:, None, :, None]
    flat = image.reshape(height * width, -1)
    crops = np.empty((len(boxes), flat.shape[1], size, size), np.float32)

    def pixels(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        index = rows[:, :, None] * width + cols[:, None, :]
        return np.take(flat, index, axis=0).astype(np.float32)

    for start in range(0, len(boxes), CROP_CHUNK):
        n = slice(start, start + CROP_CHUNK)
        # upper = top_left + (top_right - top_left) * x_lerp, and so on, without temporaries
        upper, step = pixels(top[n], left[n]), pixels(top[n], right[n])
        step -= upper
        step *= x_lerp[n]
        upper += step
        lower, step = pixels(bottom[n], left[n]), pixels(bottom[n], right[n])
        step -= lower
        step *= x_lerp[n]
        lower += step
        lower -= upper
        lower *= y_lerp[n]
        upper += lower
        outside = ~(y_valid[n, :, None] & x_valid[n, None, :])
        upper[outside] = np.float32(OUTSIDE_PIXEL)
        crops[n] = upper.transpose(0, 3, 1, 2)
    return crops


def _sample_positions(start: np.ndarray, end: np.ndarray, extent: int, size: int) -> np.ndarray:
    """Sample coordinates [n, size] along one axis, in float32 as TensorFlow computes them."""
    step = (end - start) * np.float32(extent - 1) / np.float32(size - 1)
    steps = np.arange(size, dtype=np.float32)
    return start[:, None] * np.float32(extent - 1) + steps[None, :] * step[:, None]
