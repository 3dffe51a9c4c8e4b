"""Preparing the models' tensors from a decoded photo, at full resolution or reduced."""

from __future__ import annotations

import numpy as np

from core.models import OFFERED_MODELS
from gateway.decode import decode_rgb
from gateway.inference import MODELS, Call, decode_side, prepare_resnet50, prepare_yolov3
from tests.utils.real_photos import jpeg_bytes, real_photo


def _call(**input_sizes: int) -> Call:
    return Call(client=None, timeout=1.0, repository=None, input_sizes=input_sizes)  # type: ignore[arg-type]


def test_decode_side_is_the_largest_input_or_full_resolution_for_mtcnn() -> None:
    resnet, yolo, faces = MODELS["resnet50"], MODELS["yolov3"], MODELS["mtcnn"]
    assert decode_side([resnet], _call()) == 224
    assert decode_side([resnet, yolo], _call()) == 416
    assert decode_side([resnet, yolo], _call(yolov3=608)) == 608  # the size Triton reports
    assert decode_side([resnet, faces], _call()) is None


def test_resnet50_and_yolov3_from_a_reduced_decode_see_the_same_photo() -> None:
    """A 3 MP JPEG decoded at 1/2 for YOLOv3 (short side 756 >= 416): the letterbox keeps the
    photo's own geometry (image_shape 1512x2016, so boxes come back in its pixels) and the
    tensors differ from those of a full decode only by resampling."""
    jpeg = jpeg_bytes(real_photo(3))
    full = decode_rgb(jpeg, max_pixels=10_000_000)
    reduced = decode_rgb(jpeg, max_pixels=10_000_000, min_side=416)
    assert reduced.rgb.shape == (756, 1008, 3) and full.rgb.shape == (1512, 2016, 3)
    a, b = prepare_yolov3(full, 416), prepare_yolov3(reduced, 416)
    np.testing.assert_array_equal(a["image_shape"], [[1512, 2016]])
    np.testing.assert_array_equal(b["image_shape"], a["image_shape"])
    assert a["image"].shape == b["image"].shape == (1, 416, 416, 3)
    assert np.abs(a["image"].astype(int) - b["image"]).mean() < 4
    c, d = prepare_resnet50(full, 224)["image"], prepare_resnet50(reduced, 224)["image"]
    assert np.abs(c.astype(int) - d).mean() < 4


def test_the_gateway_offers_exactly_the_contracts_models() -> None:
    assert tuple(MODELS) == OFFERED_MODELS
    assert all(name == spec.name for name, spec in MODELS.items())
