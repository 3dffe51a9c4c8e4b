"""Client-side image preparation. The arithmetic (cast, mean, scale, channel order) lives inside
the ONNX graphs; clients only resize and send compact UINT8 RGB tensors."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The committed `model_repository/{resnet50,yolov3,yolov3_backbone}/config.pbtxt` say these sizes
# too (tests/core/test_preprocessing.py checks it); the gateway asks Triton for the served ones.
RESNET50_INPUT_SIZE = 224
# Keras "caffe" preprocessing: RGB -> BGR, then subtract these per-channel means (BGR order).
RESNET50_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def resize_for_resnet50(rgb: np.ndarray, size: int = RESNET50_INPUT_SIZE) -> np.ndarray:
    """Resize an RGB uint8 image to the [size, size, 3] tensor `resnet50` expects (the size
    Triton says, 224 by default)."""
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR))


# --- YOLOv3 ----------------------------------------------------------------------------------

YOLOV3_INPUT_SIZE = 416
# Darknet letterboxes onto grey 0.5; as UINT8 that is 128.
LETTERBOX_FILL = 128


@dataclass(frozen=True)
class Letterbox:
    """Where an image of `height` x `width` sits inside the `size` x `size` letterboxed square:
    resized to `new_height` x `new_width`, placed at (`top`, `left`)."""

    height: int
    width: int
    size: int
    new_height: int
    new_width: int
    top: int
    left: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] (x_min, y_min, x_max, y_max) in letterboxed pixels to original-image
        pixels, clipped to the image: for `yolov3_backbone`'s candidates (the `yolov3` ensemble
        already answers in original-image pixels)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scale = np.array(
            [self.width / self.new_width, self.height / self.new_height] * 2, np.float32
        )
        offset = np.array([self.left, self.top] * 2, np.float32)
        limit = np.array([self.width, self.height] * 2, np.float32)
        return np.clip((boxes - offset) * scale, 0.0, limit)


def letterbox_geometry(height: int, width: int, size: int = YOLOV3_INPUT_SIZE) -> Letterbox:
    """The largest aspect-preserving fit of `height` x `width` into `size` x `size`, centred.
    `model_repository/yolov3_postprocess/1/model.py` repeats this arithmetic (tests check
    that both agree)."""
    if height < 1 or width < 1:
        raise ValueError(f"Cannot letterbox an image of {height}x{width} pixels.")
    scale = min(size / width, size / height)
    new_width = min(size, max(1, int(width * scale + 0.5)))
    new_height = min(size, max(1, int(height * scale + 0.5)))
    top, left = (size - new_height) // 2, (size - new_width) // 2
    return Letterbox(height, width, size, new_height, new_width, top, left)


def letterbox(
    rgb: np.ndarray, size: int = YOLOV3_INPUT_SIZE, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize an RGB uint8 image into a grey `size` x `size` square, keeping its aspect ratio:
    the [size, size, 3] tensor `yolov3` expects, and where the image went (send
    `[height, width]` as `image_shape`). `shape`: the (height, width) of the photo when `rgb` is
    a reduced decode of it; the geometry is the photo's. The `yolov3` ensemble already answers in
    original-image pixels; `Letterbox.to_original` maps boxes back for clients that call
    `yolov3_backbone` directly, and for tests."""
    height, width = shape or rgb.shape[:2]
    geometry = letterbox_geometry(height, width, size)
    resized = cv2.resize(
        rgb, (geometry.new_width, geometry.new_height), interpolation=cv2.INTER_LINEAR
    )
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    top, left = geometry.top, geometry.left
    canvas[top : top + geometry.new_height, left : left + geometry.new_width] = resized
    return canvas, geometry
