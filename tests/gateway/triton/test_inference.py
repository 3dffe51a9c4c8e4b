"""Preparing the models' tensors from a decoded photo, at full resolution or reduced; Triton's
errors mapped to ours; one bounded retry when Triton is going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

from core.models import OFFERED_MODELS
from gateway.errors import InferenceTimeout, ModelUnavailable, UpstreamError
from gateway.images.decode import decode_rgb
from gateway.results import Detection, Label, Options
from gateway.triton.inference import (
    MODELS,
    Call,
    ModelSpec,
    Prepared,
    _infer,
    _map_triton_error,
    dead_stub_model,
    decode_side,
    going_away,
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


# What tritonserver 2.51 answered on this machine after SIGTERM (README, "Shutdown and scale
# events"): new requests and the next step of a running ensemble or BLS model, then, once it had
# exited, the refused connection.
STOPPING = [
    ("NOT_FOUND", "Request for unknown model: 'resnet50' has no available versions"),
    (
        "UNAVAILABLE",
        "[request id: <id_unknown>] Server is stopping, scheduler for model has stopped accepting "
        "new inference requests",
    ),
    (
        "UNAVAILABLE",
        "in ensemble 'yolov3', [request id: <id_unknown>] Server is stopping, scheduler for model "
        "has stopped accepting new inference requests",
    ),
    # the mtcnn BLS model's running request, when its next network call is refused
    (
        "INTERNAL",
        "mtcnn: mtcnn_rnet failed: Model mtcnn_rnet - Error when running inference: Server not "
        "ready",
    ),
    (
        "UNAVAILABLE",
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:47639: Failed to "
        "connect to remote host: Connection refused",
    ),
]


@pytest.mark.parametrize(("status", "message"), STOPPING)
def test_going_away_is_every_answer_of_a_stopping_triton(status: str, message: str) -> None:
    assert going_away(_triton_error(status, message))


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("INTERNAL", "Stub process 'resnet50_0_0' is not healthy."),
        ("DEADLINE_EXCEEDED", "Deadline Exceeded"),
        ("INTERNAL", "Failed to run the model: ONNX Runtime out of memory"),
        ("INVALID_ARG", "unexpected shape for input 'image' for model 'resnet50'"),
    ],
)
def test_going_away_is_not_a_failure_of_a_serving_triton(status: str, message: str) -> None:
    assert not going_away(_triton_error(status, message))


@dataclass
class FakeTriton:
    """Answers each infer from `answers` in turn (an exception or a label), and says the model is
    ready once `ready_after` seconds have passed."""

    answers: list[InferenceServerException | str]
    ready_after: float = 0.0
    calls: int = 0
    ready_asked: int = 0
    started: float = field(default_factory=time.monotonic)

    async def infer(self) -> list[Label]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, InferenceServerException):
            raise answer
        return [Label(label=answer, confidence=0.9)]

    async def is_model_ready(self, model: str, client_timeout: float | None = None) -> bool:
        self.ready_asked += 1
        return time.monotonic() - self.started >= self.ready_after


async def _fake_infer(
    call: Call, prepared: Prepared, options: Options, priority: int
) -> Sequence[Detection]:
    return await call.client.infer()  # type: ignore[call-arg, no-any-return]


SPEC = ModelSpec("resnet50", "resnet50", "resnet50", prepare_resnet50, _fake_infer, 224)
STOPPING_ERROR = _triton_error(*STOPPING[1])


def _run(triton: FakeTriton, retry_wait: float, timeout: float = 5.0) -> Sequence[Detection]:
    call = Call(client=triton, timeout=timeout, repository=None, retry_wait=retry_wait)  # type: ignore[arg-type]
    return asyncio.run(_infer(SPEC, call, {}, Options(threshold=0.2, max_results=5), 0)).detections


def _retries(outcome: str) -> float:
    labels = {"model": "resnet50", "outcome": outcome}
    return REGISTRY.get_sample_value("picmetric_triton_retries_total", labels) or 0.0


def test_infer_retries_once_when_triton_goes_away_and_a_ready_one_serves_it() -> None:
    served = _retries("served")
    triton = FakeTriton([STOPPING_ERROR, "tabby"], ready_after=0.6)
    assert _run(triton, retry_wait=5.0) == [Label(label="tabby", confidence=0.9)]
    assert triton.calls == 2 and triton.ready_asked >= 2  # it waited for readiness
    assert _retries("served") == served + 1


def test_infer_without_a_ready_triton_in_time_is_503_after_the_wait() -> None:
    no_ready = _retries("no_ready_triton")
    triton = FakeTriton([STOPPING_ERROR], ready_after=60)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        _run(triton, retry_wait=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5 and triton.calls == 1
    assert _retries("no_ready_triton") == no_ready + 1


def test_infer_retries_only_once() -> None:
    failed = _retries("failed")
    triton = FakeTriton([STOPPING_ERROR, STOPPING_ERROR, "never asked"])
    with pytest.raises(ModelUnavailable):
        _run(triton, retry_wait=1.0)
    assert triton.calls == 2 and _retries("failed") == failed + 1


def test_infer_retry_stays_within_the_calls_own_deadline() -> None:
    triton = FakeTriton([STOPPING_ERROR], ready_after=60)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        _run(triton, retry_wait=30.0, timeout=0.5)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "error",
    [
        _triton_error("INTERNAL", "Failed to run the model: ONNX Runtime out of memory"),
        _triton_error("DEADLINE_EXCEEDED", "Deadline Exceeded"),
        _triton_error("INTERNAL", "Stub process 'resnet50_0_0' is not healthy."),
    ],
)
def test_infer_does_not_retry_a_failure_of_a_serving_triton(
    error: InferenceServerException,
) -> None:
    triton = FakeTriton([error, "never asked"])
    with pytest.raises((UpstreamError, InferenceTimeout, ModelUnavailable)):
        _run(triton, retry_wait=5.0)
    assert triton.calls == 1 and triton.ready_asked == 0


def test_infer_does_not_retry_when_retries_are_off() -> None:
    triton = FakeTriton([STOPPING_ERROR, "never asked"])
    with pytest.raises(ModelUnavailable):
        _run(triton, retry_wait=0)
    assert triton.calls == 1
