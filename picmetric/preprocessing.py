"""Client-side image preparation. The arithmetic (cast, mean, scale, channel order) lives inside
the ONNX graphs; clients only resize and send compact UINT8 RGB tensors."""

from __future__ import annotations

import cv2
import numpy as np

RESNET50_INPUT_SIZE = 224
# Keras "caffe" preprocessing: RGB -> BGR, then subtract these per-channel means (BGR order).
RESNET50_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def resize_for_resnet50(rgb: np.ndarray) -> np.ndarray:
    """Resize an RGB uint8 image to the [224, 224, 3] tensor `resnet50` expects."""
    size = (RESNET50_INPUT_SIZE, RESNET50_INPUT_SIZE)
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR))
