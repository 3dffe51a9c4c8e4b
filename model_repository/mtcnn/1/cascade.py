"""The MTCNN cascade as pure functions: PNet over the image pyramid (pyramid.py), then RNet and
ONet on crops of the candidates (boxes.py), to faces with landmarks. No Triton here, so unit
tests (and benchmarks) run it with any `infer` coroutine; `model.py` passes one that calls the
networks through BLS.

The reference is the `mtcnn` 1.0 package (`MTCNN().detect_faces()`), whose arithmetic the
cascade follows step by step, quirks included, so results agree with it (pyramid.py and boxes.py
say which); final boxes are clipped to the image, landmarks are not.

Deviations, which real photos with sensible parameters never meet:

- pyramid levels smaller than PNet's 12-px window are skipped (the package only makes them with a
  large `min_face_size`, and then fails or returns nothing for the whole image);
- the work one request may cause is bounded: `scale_factor` is at most MAX_SCALE_FACTOR, the
  image and its whole pyramid have pixel budgets (checked before any pixel is converted), and
  PNet's proposals are cut to the best PNET_LEVEL_TOP_K per level and PNET_TOP_K across levels
  before NMS (the package keeps them all, so `threshold_pnet=0` makes every PNet cell a box).

Coordinates are (x, y) in original image pixels. The networks get float32 RGB pixels 0..255,
channels first ([N, 3, height, width]); `mtcnn_pyramid_pnet` gets the photo's 8-bit pixels.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .boxes import (
    clip_boxes,
    crop_and_resize,
    place_landmarks,
    pnet_proposals,
    regress,
    sort_by_score,
    square,
    suppress,
)
from .parameters import CascadeError, Parameters
from .pyramid import (
    AreaTables,
    area_level,
    check_budget,
    level_size,
    pnet_bands,
    pyramid_scales,
    running_sums,
)

RNET_SIZE = 24
ONET_SIZE = 48
# PNet proposals kept, best first, across levels before the cross-level NMS: every later stage
# sees at most PNET_TOP_K boxes. The test photos stay far below (~550 on a collage of seven
# faces).
PNET_TOP_K = 5000
# Worker threads making pyramid levels, shared by the requests of one process.
_PYRAMID_THREADS = ThreadPoolExecutor(min(4, os.cpu_count() or 1), "mtcnn-pyramid")

Infer = Callable[[str, dict[str, np.ndarray], list[str]], Awaitable[dict[str, np.ndarray]]]


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


# --- the three stages -------------------------------------------------------------------------


def pnet_stage(
    outputs: list[list[dict[str, np.ndarray]]], scales: list[float], params: Parameters
) -> np.ndarray:
    """PNet outputs per level (at least one), each in bands of rows top to bottom, to square
    candidate boxes [n, 5], at most PNET_TOP_K: proposals, NMS per level, the best across
    levels, NMS across them, squaring."""
    per_level = []
    for bands, scale in zip(outputs, scales, strict=True):
        offsets = [band["offsets"][0] for band in bands]
        probabilities = [band["probabilities"][0] for band in bands]
        boxes = pnet_proposals(offsets, probabilities, scale, params.threshold_pnet)
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
    image: np.ndarray, scales: list[float], infer: Infer, pyramid_in_graph: bool
) -> list[list[dict[str, np.ndarray]]]:
    """PNet's output maps for every pyramid level, in bands of rows (one for small levels).

    With `pyramid_in_graph`, `mtcnn_pyramid_pnet` makes each band from the photo itself (on a GPU
    host, on the GPU), so here only its tables are computed. Otherwise levels are made here
    in worker threads (numpy releases the GIL), largest first, so several are made at once and
    the event loop sends each level's `mtcnn_pnet` requests as soon as it is ready."""
    height, width = image.shape[:2]
    outputs = ["offsets", "probabilities"]
    loop = asyncio.get_running_loop()
    if pyramid_in_graph:
        if image.dtype != np.uint8:
            raise CascadeError(f"the pyramid graph takes 8-bit pixels, not {image.dtype}.")
    else:
        sums = running_sums(image, [level_size(height, width, s)[0] for s in scales])

    async def level_output(scale: float) -> list[dict[str, np.ndarray]]:
        size = level_size(height, width, scale)
        if pyramid_in_graph:
            tables = AreaTables.make(height, width, *size)
            requests = [
                infer("mtcnn_pyramid_pnet", tables.band_inputs(image, a, b), outputs)
                for a, b in pnet_bands(*size)
            ]
        else:
            level = await loop.run_in_executor(_PYRAMID_THREADS, area_level, image, sums, *size)
            requests = [
                infer("mtcnn_pnet", {"image": level[None, :, a:b]}, outputs)
                for a, b in pnet_bands(*size)
            ]
        return list(await asyncio.gather(*requests))

    return list(await asyncio.gather(*(level_output(scale) for scale in scales)))


async def detect_faces(
    image: np.ndarray,
    params: Parameters,
    infer: Infer,
    crop_batch_size: int,
    pyramid_in_graph: bool = False,
) -> Faces:
    """The whole cascade on one HxWx3 RGB image (any numeric dtype, 0..255; UINT8 with
    `pyramid_in_graph`). `infer(model, inputs, outputs)` runs mtcnn_pnet (or, with
    `pyramid_in_graph`, mtcnn_pyramid_pnet), mtcnn_rnet or mtcnn_onet on a batch; RNet and ONet
    get at most `crop_batch_size` crops per request (config.pbtxt's, within their
    max_batch_size)."""
    if image.ndim != 3 or image.shape[2] != 3:
        shape = list(image.shape)
        raise CascadeError(f"image must be height x width x 3 (RGB), got shape {shape}.")
    height, width = image.shape[:2]
    scales = pyramid_scales(height, width, params.min_face_size, params.scale_factor)
    if not scales:
        return Faces.empty()
    check_budget(height, width, scales)
    pnet = await _pnet_outputs(image, scales, infer, pyramid_in_graph)
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
