"""The MTCNN cascade as pure functions: image pyramid, PNet proposals, NMS, box regression,
squaring, crops for RNet and ONet, landmarks. No Triton here, so unit tests (and benchmarks) run
it with any `infer` coroutine; `model.py` passes one that calls the networks through BLS.

The reference is the `mtcnn` 1.0 package (`MTCNN().detect_faces()`), whose arithmetic this file
follows step by step, quirks included, so results agree with it:

- the pyramid has `round(log(min_side / 12) / log(1 / scale_factor) - 1)` levels starting at
  scale `12 / min_face_size`; a level's size is `int(side * scale)`; resampling is TensorFlow's
  `ResizeMethod.AREA`;
- PNet windows are `[2x + 1, 2x + 12]` (and likewise in y) and regressed *before* NMS;
- NMS drops every box that overlaps any higher-scored box by more than the threshold, even one
  that was itself dropped; IoU uses areas `(x2 - x1) * (y2 - y1)`;
- crops follow `tf.image.crop_and_resize` with boxes divided by the image size (not size - 1),
  and pixels outside the image are the value that normalises to 0 (127.5);
- final boxes are clipped to the image; landmarks are not.

Deviations, which real photos with sensible parameters never meet:

- pyramid levels smaller than PNet's 12-px window are skipped (the package only makes them with a
  large `min_face_size`, and then fails or returns nothing for the whole image);
- the work one request may cause is bounded: `scale_factor` is at most MAX_SCALE_FACTOR, the
  image and its whole pyramid have pixel budgets (checked before any pixel is converted), and
  PNet's proposals are cut to the best PNET_LEVEL_TOP_K per level and PNET_TOP_K across levels
  before NMS (the package keeps them all, so `threshold_pnet=0` makes every PNet cell a box).

Coordinates are (x, y) in original image pixels. The networks get float32 RGB pixels 0..255,
channels first ([N, 3, height, width]).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace

import numpy as np

PNET_WINDOW = 12  # PNet's receptive field, and the smallest image it takes
PNET_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48
# The pixel value the networks' normalisation (p - 127.5) / 128 maps to 0: TensorFlow's
# crop_and_resize fills outside the (normalised) image with 0.
OUTSIDE_PIXEL = 127.5
# Budgets that keep one request from exhausting the instance's memory or time. An image over
# MAX_IMAGE_PIXELS (48-megapixel photos pass), or whose pyramid totals more than
# MAX_PYRAMID_PIXELS over all levels (min_face_size 12 on a 4000x3000 photo passes), is refused.
# A scale_factor up to MAX_SCALE_FACTOR keeps the pyramid at most about 60 levels.
MAX_IMAGE_PIXELS = 50_000_000
MAX_PYRAMID_PIXELS = 32_000_000
MAX_SCALE_FACTOR = 0.9
# PNet proposals kept, best first, per level before that level's NMS and across levels before
# the cross-level NMS; every later stage sees at most PNET_TOP_K boxes. The test photos stay far
# below (at most ~450 per level and ~550 across levels, on a collage of seven faces).
PNET_LEVEL_TOP_K = 2000
PNET_TOP_K = 5000
# Output rows of a pyramid level made at a time: a band's temporaries (a few MB for a 12 MP
# photo) stay in cache.
ROWS_PER_BAND = 32
# Pixels of one PNet request: larger pyramid levels go in bands of rows, so PNet's memory stays
# bounded whatever the photo's size (its feature maps take ~130 bytes a pixel: a 12 MP photo's
# first level whole would take 0.6 GB).
PNET_BAND_PIXELS = 1_000_000
# Worker threads making pyramid levels, shared by the requests of one process.
_PYRAMID_THREADS = ThreadPoolExecutor(min(4, os.cpu_count() or 1), "mtcnn-pyramid")
# Boxes per NMS step: its temporaries are O(n * NMS_CHUNK), 10 MB each for PNET_TOP_K boxes.
NMS_CHUNK = 256

Infer = Callable[[str, dict[str, np.ndarray], list[str]], Awaitable[dict[str, np.ndarray]]]


class CascadeError(ValueError):
    """A request the cascade cannot run: a bad parameter or an unusable image."""


@dataclass(frozen=True)
class Parameters:
    """The cascade's knobs, named as the mtcnn package's detect_faces() keyword arguments. The
    server takes its defaults from config.pbtxt (`from_config`); these, for the pure functions
    and benchmarks, are the same (a unit test checks)."""

    min_face_size: float = 20.0
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet1: float = 0.5  # per pyramid level
    nms_pnet2: float = 0.7  # across levels
    nms_rnet: float = 0.7
    nms_onet: float = 0.7  # IoU over the smaller box

    def check(self) -> Parameters:
        if not self.min_face_size > 0:
            raise CascadeError(f"min_face_size must be > 0, got {self.min_face_size}.")
        if not 0 < self.scale_factor <= MAX_SCALE_FACTOR:
            raise CascadeError(
                f"scale_factor must be > 0 and at most {MAX_SCALE_FACTOR}, got {self.scale_factor}."
            )
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith(("threshold_", "nms_")) and not 0 <= value <= 1:
                raise CascadeError(f"{field.name} must be between 0 and 1, got {value}.")
        return self

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> Parameters:
        """The parameters from config.pbtxt, which must name every one (it is their source)."""
        missing = sorted({field.name for field in fields(cls)} - set(values))
        if missing:
            raise CascadeError(f"config.pbtxt parameters {missing} are missing.")
        return cls().update(values)

    def update(self, values: Mapping[str, object]) -> Parameters:
        """A copy with `values` (numbers or numeric strings, e.g. Triton parameters) applied."""
        known = {field.name for field in fields(self)}
        changes: dict[str, float] = {}
        for key, value in values.items():
            if key not in known:
                names = ", ".join(sorted(known))
                raise CascadeError(f"Unknown parameter '{key}'; the parameters are: {names}.")
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise CascadeError(f"Parameter '{key}' must be a number, got {value!r}.") from None
            if isinstance(value, bool) or not math.isfinite(number):
                raise CascadeError(f"Parameter '{key}' must be a finite number, got {value!r}.")
            changes[key] = number
        return replace(self, **changes).check()


@dataclass(frozen=True)
class Faces:
    """Detections in original pixels: boxes [n, 4] (x_min, y_min, x_max, y_max), scores [n],
    landmarks [n, 5, 2] (x, y) for left_eye, right_eye, nose, mouth_left, mouth_right."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Faces:
        zeros = np.zeros
        return cls(zeros((0, 4), np.float32), zeros(0, np.float32), zeros((0, 5, 2), np.float32))


# --- image pyramid -----------------------------------------------------------------------------


def pyramid_scales(
    height: int, width: int, min_face_size: float, scale_factor: float
) -> list[float]:
    """The package's pyramid scales, without levels smaller than PNet's window."""
    min_side = min(height, width)
    if min_side < PNET_WINDOW:
        return []
    count = round(-((np.log(min_side / PNET_WINDOW) / np.log(scale_factor)) + 1))
    scales = (PNET_WINDOW / min_face_size) * scale_factor ** np.arange(max(count, 0))
    return [float(s) for s in scales if min(level_size(height, width, float(s))) >= PNET_WINDOW]


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """A pyramid level's size: the package truncates `side * scale` (TensorFlow's int cast)."""
    return int(height * scale), int(width * scale)


def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, taps] and overlap weights [out, taps] of TensorFlow's area resize
    along one axis (float32 arithmetic, out-of-range indices clamped as TensorFlow does)."""
    scale = np.float32(in_size / out_size)
    position = np.arange(out_size, dtype=np.float32)
    start = position * scale
    end = (position + 1) * scale
    first = np.floor(start).astype(np.int64)
    last = np.ceil(end).astype(np.int64)
    taps = int(np.max(last - first))
    index = first[:, None] + np.arange(taps)[None, :]
    i = index.astype(np.float32)
    s, e = start[:, None], end[:, None]
    weight = np.where(
        i < s,
        np.where(i + 1 > e, scale, i + 1 - s),
        np.where(i + 1 > e, e - i, np.float32(1.0)),
    ).astype(np.float32)
    weight[index >= last[:, None]] = 0
    return np.clip(index, 0, in_size - 1), weight


def _area_edges(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The out_size + 1 cell edges of TensorFlow's area resize along one axis (edge i at
    i * in_size / out_size, in float32 as TensorFlow computes it): the input pixel each edge
    falls in, and the part of that pixel after the edge."""
    edge = np.arange(out_size + 1, dtype=np.float32) * np.float32(in_size / out_size)
    edge = np.minimum(edge, np.float32(in_size))
    index = np.minimum(np.floor(edge).astype(np.intp), in_size - 1)
    return index, np.float32(1) - (edge - index.astype(np.float32))


def image_rows(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An HxWxC image as rows [H, C, W] and their running sums down the image (inclusive):
    exact int32 for 8-bit pixels, float64 otherwise. Every pyramid level is made from these."""
    rows = np.ascontiguousarray(image.transpose(0, 2, 1))
    if rows.dtype != np.uint8:
        rows = rows.astype(np.float64)
    sums = np.empty(rows.shape, np.int32 if rows.dtype == np.uint8 else np.float64)
    sums[0] = rows[0]
    for i in range(1, len(rows)):  # one vector add per row: numpy's cumsum down axis 0 is slow
        np.add(sums[i - 1], rows[i], out=sums[i])
    return rows, sums


def area_level(rows: np.ndarray, sums: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(image, (height, width), method="area")`, channels first [C, height,
    width] float32, from `image_rows(image)`. Down the image each output row is a difference
    of two running sums (with the fractional pixels at its edges), so a level costs its own
    rows times the input width, not the input's whole height; across, the few overlapping
    input columns are weighted. Worked in bands of ROWS_PER_BAND output rows that stay in cache."""
    in_height, channels, in_width = rows.shape
    row_index, row_rest = _area_edges(in_height, height)
    columns, column_weights = _area_taps(in_width, width)
    area = np.float32(height / in_height) * np.float32(width / in_width)
    column_weights = np.ascontiguousarray((column_weights * area).T)  # [taps, width]
    level = np.empty((channels, height, width), np.float32)
    by_row = level.transpose(1, 0, 2)  # [height, C, width], a view
    for start in range(0, height, ROWS_PER_BAND):
        stop = min(start + ROWS_PER_BAND, height)
        index, rest = row_index[start : stop + 1], row_rest[start : stop + 1, None, None]
        band = np.diff(sums[index], axis=0).astype(np.float32)  # whole pixels, exact
        partial = rows[index] * rest  # the parts of the edge pixels after each edge
        band -= partial[1:]
        band += partial[:-1]
        out = by_row[start:stop]
        np.multiply(np.take(band, columns[:, 0], axis=2), column_weights[0], out=out)
        for tap in range(1, columns.shape[1]):
            out += np.take(band, columns[:, tap], axis=2) * column_weights[tap]
    return level


def check_budget(height: int, width: int, scales: list[float]) -> None:
    """Refuse an image, or a pyramid over all its levels, above the pixel budgets; from sizes
    alone, so it runs before any pixel is converted."""
    if height * width > MAX_IMAGE_PIXELS:
        raise CascadeError(
            f"The image is {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}; "
            "send a smaller image."
        )
    total = sum(h * w for h, w in (level_size(height, width, s) for s in scales))
    if total > MAX_PYRAMID_PIXELS:
        raise CascadeError(
            f"The image pyramid would have {total:,} pixels in {len(scales)} levels for this "
            f"{width}x{height} image, more than {MAX_PYRAMID_PIXELS:,}; raise min_face_size, "
            "lower scale_factor or send a smaller image."
        )


def pyramid(image: np.ndarray, scales: list[float]) -> list[np.ndarray]:
    """The resampled levels [C, h, w], checked against the pixel budgets first."""
    height, width = image.shape[:2]
    check_budget(height, width, scales)
    rows, sums = image_rows(image)
    return [area_level(rows, sums, *level_size(height, width, s)) for s in scales]


def pnet_bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of a pyramid level that PNet sees one request at a time, each at
    most about PNET_BAND_PIXELS. PNet's output row y covers input rows 2y .. 2y + 11, so bands that
    start on even rows, have even heights (all but the last) and overlap by PNET_WINDOW -
    PNET_STRIDE rows give output rows that, stacked, are exactly the whole level's."""
    overlap = PNET_WINDOW - PNET_STRIDE
    rows = max(2 * overlap, PNET_BAND_PIXELS // max(width, 1) // 2 * 2)
    bands = [(0, min(rows, height))]
    while bands[-1][1] < height:
        start = bands[-1][1] - overlap
        bands.append((start, min(start + rows, height)))
    return bands


# --- boxes ---------------------------------------------------------------------------------------


def sort_by_score(boxes: np.ndarray) -> np.ndarray:
    """Rows [x1, y1, x2, y2, score, ...] by descending score (the package's argsort, reversed)."""
    return boxes[np.argsort(boxes[:, 4])[::-1]]


def pnet_proposals(
    offsets: np.ndarray,
    probabilities: np.ndarray,
    scale: float,
    threshold: float,
    top_k: int = PNET_LEVEL_TOP_K,
) -> np.ndarray:
    """Boxes [n, 5] (x1, y1, x2, y2, score) in original pixels from one level's PNet output
    (offsets [4, h, w], probabilities [2, h, w]), regressed, best first, at most `top_k`."""
    score = probabilities[1]
    ys, xs = np.nonzero(score > threshold)
    if len(ys) > top_k:
        best = np.sort(np.argpartition(score[ys, xs], len(ys) - top_k)[-top_k:])
        ys, xs = ys[best], xs[best]
    regression = offsets[:, ys, xs].T.astype(np.float64)
    cell = PNET_WINDOW - 1
    left, top = xs * PNET_STRIDE + 1, ys * PNET_STRIDE + 1
    right, bottom = xs * PNET_STRIDE + PNET_WINDOW, ys * PNET_STRIDE + PNET_WINDOW
    boxes = np.stack(
        [
            left + regression[:, 0] * cell,
            top + regression[:, 1] * cell,
            right + regression[:, 2] * cell,
            bottom + regression[:, 3] * cell,
            score[ys, xs].astype(np.float64),
        ],
        axis=1,
    ).reshape(-1, 5)
    boxes = sort_by_score(boxes)
    boxes[:, :4] /= scale
    return boxes


def overlap(a: np.ndarray, b: np.ndarray, method: str = "union") -> np.ndarray:
    """IoU [len(a), len(b)] of boxes (x1, y1, x2, y2); "min" divides by the smaller area."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    # One coordinate at a time: contiguous [len(a), len(b)] temporaries, 3x faster than [.., 2].
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(0, width) * np.maximum(0, height)
    if method == "union":
        denominator = area_a[:, None] + area_b[None, :] - inter
    elif method == "min":
        denominator = np.minimum(area_a[:, None], area_b[None, :])
    else:
        raise ValueError(f"method must be 'union' or 'min', got {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / denominator


def suppress(
    boxes: np.ndarray, threshold: float, method: str = "union", sort: bool = True
) -> np.ndarray:
    """The package's NMS on rows [x1, y1, x2, y2, score, ...]: keep a box unless a box before it
    (higher score) overlaps it by more than `threshold`. Memory stays O(n * NMS_CHUNK)."""
    if sort:
        boxes = sort_by_score(boxes)
    keep = np.ones(len(boxes), dtype=bool)
    for start in range(0, len(boxes), NMS_CHUNK):
        stop = min(start + NMS_CHUNK, len(boxes))
        iou = overlap(boxes[:stop, :4], boxes[start:stop, :4], method)
        earlier = np.arange(stop)[:, None] < np.arange(start, stop)[None, :]
        keep[start:stop] = ~np.any((iou > threshold) & earlier, axis=0)
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
    sample falls outside the image."""
    height, width = image.shape[:2]
    normalised = (boxes[:, :4] / np.array([width, height, width, height])).astype(np.float32)
    ys = _sample_positions(normalised[:, 1], normalised[:, 3], height, size)
    xs = _sample_positions(normalised[:, 0], normalised[:, 2], width, size)
    y_valid = (ys >= 0) & (ys <= height - 1)
    x_valid = (xs >= 0) & (xs <= width - 1)
    top = np.clip(np.floor(ys), 0, height - 1).astype(np.int64)
    bottom = np.clip(np.ceil(ys), 0, height - 1).astype(np.int64)
    left = np.clip(np.floor(xs), 0, width - 1).astype(np.int64)
    right = np.clip(np.ceil(xs), 0, width - 1).astype(np.int64)
    y_lerp = (ys - np.floor(ys))[:, :, None, None]
    x_lerp = (xs - np.floor(xs))[:, None, :, None]
    flat = image.reshape(height * width, -1)

    def pixels(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        index = rows[:, :, None] * width + cols[:, None, :]
        return np.take(flat, index, axis=0).astype(np.float32)

    top_left, bottom_left = pixels(top, left), pixels(bottom, left)
    upper = top_left + (pixels(top, right) - top_left) * x_lerp
    lower = bottom_left + (pixels(bottom, right) - bottom_left) * x_lerp
    crops = upper + (lower - upper) * y_lerp
    inside = (y_valid[:, :, None] & x_valid[:, None, :])[..., None]
    crops = np.where(inside, crops, np.float32(OUTSIDE_PIXEL)).astype(np.float32)
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))


def _sample_positions(start: np.ndarray, end: np.ndarray, extent: int, size: int) -> np.ndarray:
    """Sample coordinates [n, size] along one axis, in float32 as TensorFlow computes them."""
    step = (end - start) * np.float32(extent - 1) / np.float32(size - 1)
    steps = np.arange(size, dtype=np.float32)
    return start[:, None] * np.float32(extent - 1) + steps[None, :] * step[:, None]


# --- the three stages -------------------------------------------------------------------------


def pnet_stage(
    outputs: list[dict[str, np.ndarray]], scales: list[float], params: Parameters
) -> np.ndarray:
    """PNet outputs per level (at least one) to square candidate boxes [n, 5], at most
    PNET_TOP_K: proposals, NMS per level, the best across levels, NMS across them, squaring."""
    per_level = []
    for out, scale in zip(outputs, scales, strict=True):
        boxes = pnet_proposals(
            out["offsets"][0], out["probabilities"][0], scale, params.threshold_pnet
        )
        per_level.append(suppress(boxes, params.nms_pnet1, sort=False))
    boxes = sort_by_score(np.concatenate(per_level))[:PNET_TOP_K]
    return square(suppress(boxes, params.nms_pnet2, sort=False))


def rnet_stage(
    boxes: np.ndarray, offsets: np.ndarray, probabilities: np.ndarray, params: Parameters
) -> np.ndarray:
    """RNet's verdict on the candidates: regress, rescore, threshold, NMS, square."""
    boxes = regress(boxes, offsets)
    boxes[:, 4] = probabilities[:, 1]
    boxes = boxes[boxes[:, 4] > params.threshold_rnet]
    return square(suppress(boxes, params.nms_rnet))


def onet_stage(
    boxes: np.ndarray,
    offsets: np.ndarray,
    landmarks: np.ndarray,
    probabilities: np.ndarray,
    params: Parameters,
    height: int,
    width: int,
) -> Faces:
    """ONet's verdict: landmarks, regress, rescore, threshold, NMS (over the smaller box),
    boxes clipped to the image."""
    points = place_landmarks(landmarks, boxes).reshape(-1, 10)
    regressed = regress(boxes, offsets)
    regressed[:, 4] = probabilities[:, 1]
    rows = np.concatenate([regressed, points], axis=1)
    rows = rows[rows[:, 4] > params.threshold_onet]
    rows = suppress(rows, params.nms_onet, method="min")
    rows[:, :4] = clip_boxes(rows[:, :4], height, width)
    return Faces(
        boxes=rows[:, :4].astype(np.float32),
        scores=rows[:, 4].astype(np.float32),
        landmarks=rows[:, 5:].reshape(-1, 5, 2).astype(np.float32),
    )


async def _infer_crops(
    infer: Infer, model: str, crops: np.ndarray, outputs: list[str], batch: int
) -> dict[str, np.ndarray]:
    """Run `crops` through `model` in requests of at most `batch` rows, one after another: on
    Triton's CPU server three requests of a 12 MP photo's RNet crops took 0.62-0.69 s in flight
    together and 0.28-0.29 s in turn (the same as one request of all of them)."""
    chunks = [crops[i : i + batch] for i in range(0, len(crops), batch)]
    results = [await infer(model, {"image": chunk}, outputs) for chunk in chunks]
    return {name: np.concatenate([r[name] for r in results]) for name in outputs}


async def _pnet_outputs(
    image: np.ndarray, scales: list[float], infer: Infer
) -> list[dict[str, np.ndarray]]:
    """PNet's output maps for every pyramid level. Levels are made in worker threads (numpy
    releases the GIL), largest first, so several are made at once and the event loop sends each
    level's PNet requests (in bands) as soon as it is ready."""
    height, width = image.shape[:2]
    rows, sums = image_rows(image)
    outputs = ["offsets", "probabilities"]
    loop = asyncio.get_running_loop()

    async def level_output(scale: float) -> dict[str, np.ndarray]:
        size = level_size(height, width, scale)
        level = await loop.run_in_executor(_PYRAMID_THREADS, area_level, rows, sums, *size)
        requests = [
            infer("mtcnn_pnet", {"image": level[None, :, a:b]}, outputs)
            for a, b in pnet_bands(*size)
        ]
        bands = await asyncio.gather(*requests)
        return {name: np.concatenate([band[name] for band in bands], axis=2) for name in outputs}

    return list(await asyncio.gather(*(level_output(scale) for scale in scales)))


async def detect_faces(
    image: np.ndarray, params: Parameters, infer: Infer, crop_batch_size: int
) -> Faces:
    """The whole cascade on one HxWx3 RGB image (any numeric dtype, 0..255). `infer(model,
    inputs, outputs)` runs mtcnn_pnet, mtcnn_rnet or mtcnn_onet on a batch; RNet and ONet get
    at most `crop_batch_size` crops per request (config.pbtxt's, within their max_batch_size)."""
    if image.ndim != 3 or image.shape[2] != 3:
        shape = list(image.shape)
        raise CascadeError(f"image must be height x width x 3 (RGB), got shape {shape}.")
    height, width = image.shape[:2]
    scales = pyramid_scales(height, width, params.min_face_size, params.scale_factor)
    if not scales:
        return Faces.empty()
    check_budget(height, width, scales)
    pnet = await _pnet_outputs(image, scales, infer)
    boxes = pnet_stage(pnet, scales, params)
    if not len(boxes):
        return Faces.empty()

    rnet = await _infer_crops(
        infer,
        "mtcnn_rnet",
        crop_and_resize(image, boxes, RNET_SIZE),
        ["offsets", "probabilities"],
        crop_batch_size,
    )
    boxes = rnet_stage(boxes, rnet["offsets"], rnet["probabilities"], params)
    if not len(boxes):
        return Faces.empty()

    onet = await _infer_crops(
        infer,
        "mtcnn_onet",
        crop_and_resize(image, boxes, ONET_SIZE),
        ["offsets", "landmarks", "probabilities"],
        crop_batch_size,
    )
    return onet_stage(
        boxes, onet["offsets"], onet["landmarks"], onet["probabilities"], params, height, width
    )
