"""YOLOv3 test helpers: the postprocess model's module, the `yolov3` ensemble's request inputs, a
Triton repository with only the yolov3 models, and crafted yolov3-tiny weights whose one
detection is known in advance."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import tritonclient.grpc as grpcclient

from conversion import darknet, yolov3
from core.preprocessing import Letterbox, letterbox_geometry
from picmetric.repository import copy_models, load_model_module

YOLOV3_MODELS = ("yolov3_backbone", "yolov3_postprocess", "yolov3")

# The crafted network answers one box per bright-red 16 x 16 cell of the letterboxed input: the
# cell's centre, CRAFTED_BOX_SIZE pixels square, class CRAFTED_CLASS, score ~1.
CRAFTED_STRIDE = 16
CRAFTED_BOX_SIZE = 64.0
CRAFTED_CLASS = 0  # person


def postprocess_module() -> ModuleType:
    """model_repository/yolov3_postprocess/1/model.py, imported without Triton."""
    return load_model_module("yolov3_postprocess", "model")


def ensemble_inputs(image: np.ndarray, geometry: Letterbox) -> list[grpcclient.InferInput]:
    """The `yolov3` ensemble's inputs for one letterboxed `image` [S, S, 3]: `image` UINT8
    [1, S, S, 3] and `image_shape` INT32 [1, 2], the original height and width from `geometry`
    (the boxes come back in its pixels)."""
    inputs = [
        grpcclient.InferInput("image", [1, *image.shape], "UINT8"),
        grpcclient.InferInput("image_shape", [1, 2], "INT32"),
    ]
    inputs[0].set_data_from_numpy(image[None])
    inputs[1].set_data_from_numpy(np.array([[geometry.height, geometry.width]], np.int32))
    return inputs


def copy_yolov3_repository(target: Path) -> Path:
    """The committed yolov3 model folders (no converted files) in `target`."""
    return copy_models(YOLOV3_MODELS, target)


def write_crafted_tiny_weights(path: Path) -> None:
    """yolov3-tiny weights whose second head (stride 16) sees max(red) of each 16 x 16 cell.

    Every convolution on the path image -> layer 8 -> layer 21 -> layer 22 copies channel 0 (red)
    through (a centre tap of 1, identity batch norm; the stride-2 maxpools take the max over each
    cell); every other convolution is zero. Layer 22 turns red = 1 into objectness logit +10
    (red <= 0.5, e.g. the grey letterbox, gives -10 or less) for its first anchor (23 x 27),
    stretched to 64 x 64 pixels, class 0."""
    network = darknet.parse_cfg(yolov3.cfg_path("yolov3-tiny.cfg"))
    copy_red = {0: 0, 2: 0, 4: 0, 6: 0, 8: 0, 21: 128}  # layer -> input channel of red
    weights = []
    for conv in network.convs:
        kernel = np.zeros(conv.kernel_shape, np.float32)
        bias = np.zeros(conv.filters, np.float32)
        ones, zeros = np.ones(conv.filters, np.float32), np.zeros(conv.filters, np.float32)
        gamma = ones if conv.index in copy_red else zeros
        bn = (gamma, zeros, ones) if conv.batch_normalize else None
        if conv.index in copy_red:
            kernel[0, copy_red[conv.index], conv.size // 2, conv.size // 2] = 1.0
        if not conv.batch_normalize:  # the two detection heads
            logits = bias.reshape(-1, 85)
            logits[:, 4] = -30.0
            if conv.index == 22:
                kernel[4, 0, 0, 0] = 40.0
                logits[0, 2:4] = [math.log(CRAFTED_BOX_SIZE / 23), math.log(CRAFTED_BOX_SIZE / 27)]
                logits[0, 5:] = -10.0
                logits[0, 5 + CRAFTED_CLASS] = 10.0
        weights.append(darknet.ConvWeights(bias, kernel, bn))
    darknet.write_weights(path, network, weights)


def crafted_image(
    height: int, width: int, cell: tuple[int, int], size: int = 416
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with no red except a patch that, letterboxed, lies inside `cell` (row,
    column of the 16-pixel grid) with a 4-pixel margin; and the crafted network's box for it in
    letterboxed pixels."""
    rng = np.random.default_rng(height * 10_000 + width)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 1:] = rng.integers(0, 256, (height, width, 2), dtype=np.uint8)
    geometry = letterbox_geometry(height, width, size)
    row, column = cell
    x0, y0 = column * CRAFTED_STRIDE + 4, row * CRAFTED_STRIDE + 4
    x1, y1 = x0 + CRAFTED_STRIDE - 8, y0 + CRAFTED_STRIDE - 8
    if not (
        geometry.left <= x0
        and x1 <= geometry.left + geometry.new_width
        and geometry.top <= y0
        and y1 <= geometry.top + geometry.new_height
    ):
        raise ValueError(f"cell {cell} is not inside the letterboxed {height}x{width} image")
    sx, sy = width / geometry.new_width, height / geometry.new_height
    left, right = math.ceil((x0 - geometry.left) * sx), int((x1 - geometry.left) * sx)
    top, bottom = math.ceil((y0 - geometry.top) * sy), int((y1 - geometry.top) * sy)
    image[top:bottom, left:right, 0] = 255
    centre_x = column * CRAFTED_STRIDE + CRAFTED_STRIDE / 2
    centre_y = row * CRAFTED_STRIDE + CRAFTED_STRIDE / 2
    half = CRAFTED_BOX_SIZE / 2
    box = np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half], np.float32)
    return image, box
