"""yolov3_postprocess: from the backbone's candidates to detections in original-image pixels.

score = objectness x class probability (the backbone computes it) above `score_threshold`, every
(box, class) pair a candidate as in darknet; class-wise greedy NMS at `iou_threshold`; the best
`max_detections` per image; the letterbox undone and boxes clipped to the image.

All requests of one execute() are handled together: one NMS pass over every image and class.
Defaults come from config.pbtxt `parameters`; a request overrides them with Triton request
parameters of the same name (an unknown name or a bad value fails that request alone). This
folder needs only numpy (it also runs in the NGC image); the maths are module-level functions
that unit tests import without Triton, IoU and parameter parsing in common.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .common import from_parameters, overlap, with_parameters

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported by unit tests, outside Triton
    pb_utils = None


OUTPUTS = ("boxes", "scores", "classes")


@dataclass(frozen=True)
class Settings:
    """The thresholds of one request (defaults: config.pbtxt `parameters`)."""

    score_threshold: float
    iou_threshold: float
    max_detections: int
    pre_nms_top_k: int  # per image, before NMS: bounds the cost of low thresholds

    @classmethod
    def from_config(cls, parameters: dict[str, str]) -> Settings:
        """The settings from config.pbtxt, which must name every one. Raises ValueError."""
        return from_parameters(cls, parameters).check()

    def override(self, values: str | Mapping[str, object]) -> Settings:
        """These settings with `values` applied: Triton request parameters (their JSON text or a
        mapping), every name one of the fields. Raises ValueError."""
        return with_parameters(self, values).check()

    def check(self) -> Settings:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}.")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}.")
        if self.max_detections < 1 or self.pre_nms_top_k < 1:
            raise ValueError("max_detections and pre_nms_top_k must be at least 1.")
        return self


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # [K, 4] float32, x_min, y_min, x_max, y_max
    scores: np.ndarray  # [K] float32, descending
    classes: np.ndarray  # [K] int32


def letterbox_geometry(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(new_height, new_width, top, left) of an image letterboxed into `size` x `size`; the same
    arithmetic as `core.preprocessing.letterbox_geometry` (tests check they agree)."""
    scale = min(size / width, size / height)
    new_width = min(size, max(1, int(width * scale + 0.5)))
    new_height = min(size, max(1, int(height * scale + 0.5)))
    return new_height, new_width, (size - new_height) // 2, (size - new_width) // 2


def undo_letterbox(boxes: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Boxes [N, 4] in letterboxed pixels to original-image pixels, clipped to the image."""
    new_height, new_width, top, left = letterbox_geometry(height, width, size)
    scale = np.array([width / new_width, height / new_height] * 2, np.float32)
    offset = np.array([left, top] * 2, np.float32)
    limit = np.array([width, height] * 2, np.float32)
    return np.clip((boxes.astype(np.float32) - offset) * scale, 0.0, limit)


def select_candidates(
    scores: np.ndarray, score_threshold: float, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row, class) of every score above the threshold, the best `top_k` of them."""
    rows, classes = np.nonzero(scores > score_threshold)
    if rows.size > top_k:
        best = np.argpartition(-scores[rows, classes], top_k - 1)[:top_k]
        rows, classes = rows[best], classes[best]
    return rows, classes


def nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Greedy NMS within each group (boxes of different groups never suppress each other):
    indices kept, by descending score. A box is dropped when its IoU with a kept box of its
    group exceeds `iou_threshold`."""
    # One pass over all groups; a mask keeps them apart. Offsetting each group by a span (the
    # batched-NMS trick) would tie every group to the batch's largest coordinate instead.
    boxes = boxes.astype(np.float64)  # areas of huge but finite boxes stay finite
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        apart = groups[order] != groups[best]
        iou = overlap(boxes[best][None], boxes[order])[0]
        order = order[apart | (iou <= iou_threshold)]
    return np.array(keep, np.int64)


def detect(
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    shapes: list[tuple[int, int]],
    settings: list[Settings],
    size: int,
) -> list[Detections]:
    """Detections for many images at once: candidates boxes[i] [N, 4] and scores[i] [N, C] in
    letterboxed pixels of image i, whose original shape is shapes[i] = (height, width)."""
    if not boxes:
        return []
    picked_boxes, picked_scores, picked_classes, picked_images = [], [], [], []
    for image, (b, s, options) in enumerate(zip(boxes, scores, settings, strict=True)):
        if not np.isfinite(b).all():  # exp() overflow in the decode: such boxes never count
            s = np.where(np.isfinite(b).all(axis=1, keepdims=True), s, 0.0)
        rows, classes = select_candidates(s, options.score_threshold, options.pre_nms_top_k)
        picked_boxes.append(b[rows])
        picked_scores.append(s[rows, classes])
        picked_classes.append(classes)
        picked_images.append(np.full(rows.size, image))
    all_boxes = np.concatenate(picked_boxes).reshape(-1, 4)
    all_scores = np.concatenate(picked_scores).astype(np.float32)
    all_classes = np.concatenate(picked_classes).astype(np.int64)
    all_images = np.concatenate(picked_images).astype(np.int64)
    groups = all_images * scores[0].shape[1] + all_classes

    kept = np.zeros(0, np.int64)
    # Usually one pass: requests rarely ask for different IoU thresholds.
    thresholds = np.array([settings[i].iou_threshold for i in all_images], np.float64)
    for threshold in np.unique(thresholds):
        subset = np.nonzero(thresholds == threshold)[0]
        chosen = nms(all_boxes[subset], all_scores[subset], groups[subset], float(threshold))
        kept = np.concatenate([kept, subset[chosen]])
    kept = kept[np.argsort(-all_scores[kept], kind="stable")]

    results = []
    for image, ((height, width), options) in enumerate(zip(shapes, settings, strict=True)):
        mine = kept[all_images[kept] == image][: options.max_detections]
        results.append(
            Detections(
                boxes=undo_letterbox(all_boxes[mine], height, width, size),
                scores=all_scores[mine],
                classes=all_classes[mine].astype(np.int32),
            )
        )
    return results


def pad_detections(results: list[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-image detections into [B, K, 4], [B, K], [B, K] with K the largest count; the
    padding has score 0 and class -1."""
    count = max((len(r.scores) for r in results), default=0)
    boxes = np.zeros((len(results), count, 4), np.float32)
    scores = np.zeros((len(results), count), np.float32)
    classes = np.full((len(results), count), -1, np.int32)
    for i, r in enumerate(results):
        n = len(r.scores)
        boxes[i, :n], scores[i, :n], classes[i, :n] = r.boxes, r.scores, r.classes
    return boxes, scores, classes


def check_candidates(boxes: np.ndarray, scores: np.ndarray, images: int) -> None:
    """Raises ValueError unless `boxes` [B, N, 4] and `scores` [B, N, C] of one request agree
    with each other and with the request's `images` image shapes."""
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3:
        raise ValueError(
            f"candidate_boxes must be [batch, N, 4] and candidate_scores [batch, N, classes], "
            f"got {list(boxes.shape)} and {list(scores.shape)}."
        )
    if boxes.shape[:2] != scores.shape[:2]:
        raise ValueError(
            f"candidate_boxes {list(boxes.shape)} and candidate_scores {list(scores.shape)} "
            "must have the same batch and candidate counts."
        )
    if images != boxes.shape[0]:
        raise ValueError("image_shape needs one [height, width] per image.")


def parse_shapes(image_shape: np.ndarray) -> list[tuple[int, int]]:
    """`image_shape` [B, 2] as (height, width) pairs; raises ValueError on nonsense."""
    shapes = [(int(h), int(w)) for h, w in np.asarray(image_shape).reshape(-1, 2)]
    for height, width in shapes:
        if height < 1 or width < 1:
            raise ValueError(
                f"image_shape must be a positive [height, width], not [{height}, {width}]."
            )
    return shapes


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.size = int(parameters.pop("input_size"))
        self.defaults = Settings.from_config(parameters)

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        owners, boxes, scores, shapes, settings = [], [], [], [], []
        for index, request in enumerate(requests):
            try:
                options = self.defaults.override(request.parameters())
                b = pb_utils.get_input_tensor_by_name(request, "candidate_boxes").as_numpy()
                s = pb_utils.get_input_tensor_by_name(request, "candidate_scores").as_numpy()
                image_shape = pb_utils.get_input_tensor_by_name(request, "image_shape").as_numpy()
                request_shapes = parse_shapes(image_shape)
                check_candidates(b, s, len(request_shapes))
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[index] = pb_utils.InferenceResponse(error=error)
                continue
            for image in range(b.shape[0]):
                owners.append(index)
                boxes.append(b[image])
                scores.append(s[image])
                shapes.append(request_shapes[image])
                settings.append(options)
        results = detect(boxes, scores, shapes, settings, self.size)
        for index in range(len(requests)):
            if responses[index] is not None:
                continue
            mine = [r for owner, r in zip(owners, results, strict=True) if owner == index]
            arrays = zip(OUTPUTS, pad_detections(mine), strict=True)
            tensors = [pb_utils.Tensor(name, array) for name, array in arrays]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
