"""Preparing the models' tensors from a decoded photo, at full resolution or reduced; Triton's
errors mapped to ours."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from core.models import OFFERED_MODELS
from gateway.decode import decode_rgb
from gateway.errors import InferenceTimeout, ModelUnavailable, UpstreamError
from gateway.inference import (
    MODELS,
    Call,
    _map_triton_error,
    dead_stub_model,
    decode_side,
    prepare_resnet50,
    prepare_yolov3,
)
from tests.utils.ports import free_port
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


# Triton's errors as its gRPC client raises them (tritonclient's get_error_grpc: the message,
# and the status as str(grpc.StatusCode)), with the texts Triton 2.51 answered on this machine.
def _triton_error(status: str, message: str) -> InferenceServerException:
    return InferenceServerException(message, f"StatusCode.{status}", f"{status}:{message}")


@pytest.mark.parametrize(
    ("status", "message", "dead"),
    [
        ("INTERNAL", "Stub process 'resnet50_0_0' is not healthy.", "resnet50"),
        (
            "INTERNAL",
            "in ensemble 'yolov3', Stub process 'yolov3_backbone_0_0' is not healthy.",
            "yolov3_backbone",
        ),
        (
            "INTERNAL",
            "mtcnn: mtcnn_pnet failed: Stub process 'mtcnn_pnet_0_0' is not healthy.",
            "mtcnn_pnet",
        ),
        ("INTERNAL", "Stub process 'mtcnn_0_1' is not healthy.", "mtcnn"),
    ],
)
def test_map_triton_error_dead_stub_is_503_naming_the_model_to_reload(
    status: str, message: str, dead: str
) -> None:
    error = _map_triton_error("yolov3", _triton_error(status, message))
    assert isinstance(error, ModelUnavailable)
    assert error.status_code == 503 and error.headers["Retry-After"]
    assert "reloading" in str(error) and f"({message.rstrip('.')})" in str(error)
    assert dead_stub_model(message) == dead


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("NOT_FOUND", "Request for unknown model: 'resnet50' has no available versions"),
        ("NOT_FOUND", "Request for unknown model: 'nosuch' is not found"),
        (
            "INTERNAL",
            "in ensemble 'yolov3', Request for unknown model: 'yolov3_backbone' has no available "
            "versions",
        ),
        ("UNAVAILABLE", "failed to connect to all addresses; last error: Connection refused"),
        ("UNAVAILABLE", "Socket closed"),
    ],
)
def test_map_triton_error_model_or_triton_not_serving_is_503(status: str, message: str) -> None:
    error = _map_triton_error("resnet50", _triton_error(status, message))
    assert isinstance(error, ModelUnavailable) and error.headers["Retry-After"]
    assert dead_stub_model(message) is None


def test_map_triton_error_deadline_is_504() -> None:
    error = _map_triton_error("mtcnn", _triton_error("DEADLINE_EXCEEDED", "Deadline Exceeded"))
    assert isinstance(error, InferenceTimeout) and error.status_code == 504


def test_map_triton_error_other_failures_are_502_with_tritons_words() -> None:
    message = "Failed to run the model: ONNX Runtime out of memory"
    error = _map_triton_error("resnet50", _triton_error("INTERNAL", message))
    assert type(error) is UpstreamError and error.status_code == 502
    assert message in str(error)


def test_map_triton_error_unreachable_triton_is_503() -> None:
    """A real gRPC client against a loopback port where nothing listens."""

    async def infer() -> InferenceServerException:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{free_port()}")
        try:
            image = np.zeros((1, 224, 224, 3), np.uint8)
            tensor = grpcclient.InferInput("image", list(image.shape), "UINT8")
            tensor.set_data_from_numpy(image)
            await client.infer("resnet50", [tensor], client_timeout=10)
        except InferenceServerException as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("nothing listens, yet the call succeeded")

    error = _map_triton_error("resnet50", asyncio.run(infer()))
    assert isinstance(error, ModelUnavailable) and "not reachable" in str(error)
