"""YOLOv3 through a real Triton server (`yolov3_backbone`, `yolov3_postprocess`, the `yolov3`
ensemble), against OpenCV's darknet importer (the oracle) on the same cfg and weights file."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conversion import yolov3
from core.preprocessing import Letterbox, letterbox
from picmetric.triton_server import TritonServer
from tests.conftest import TEST_SEED
from tests.utils.darknet_oracle import OpenCVDarknet, assert_same_detections, opencv_nms
from tests.utils.yolov3 import ensemble_inputs

pytestmark = pytest.mark.integration

# Boxes relative to the input size (as darknet and OpenCV report them) and scores, absolute.
# Observed: ~1.3e-4 and ~1e-4 after 75 float32 layers.
CANDIDATES_ATOL = 1e-3
SCORE_THRESHOLD, IOU_THRESHOLD = 0.25, 0.45  # config.pbtxt's defaults
ALL_DETECTIONS = {"max_detections": 10_000, "pre_nms_top_k": 10_000}


def _detect(
    client: grpcclient.InferenceServerClient,
    image: np.ndarray,
    geometry: Letterbox,
    parameters: dict[str, object] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    result = client.infer("yolov3", ensemble_inputs(image, geometry), parameters=parameters)
    return tuple(result.as_numpy(n)[0] for n in ("boxes", "scores", "classes"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def oracle(model_repository: Path) -> OpenCVDarknet:
    """OpenCV's darknet importer on the weights file Triton's backbone was converted from."""
    weights = yolov3.resolve("random", TEST_SEED)
    record = json.loads((model_repository / "yolov3_backbone/1/provenance.json").read_text())
    assert record["weights"]["sha256"] == weights.sha256, "Triton serves other weights"
    assert record["cfg"] == "yolov3.cfg" and record["input_size"] == 416
    return OpenCVDarknet(yolov3.cfg_path("yolov3.cfg"), weights.path)


@pytest.fixture(scope="module")
def letterboxed(photos: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, Letterbox]]:
    return {name: letterbox(photo) for name, photo in photos.items()}


@pytest.mark.slow
def test_yolov3_candidates_and_detections_match_opencv_darknet_atol_1e3(
    triton: TritonServer,
    oracle: OpenCVDarknet,
    letterboxed: dict[str, tuple[np.ndarray, Letterbox]],
) -> None:
    """Oracle: cv2.dnn.readNetFromDarknet, same yolov3.cfg and weights. The backbone's boxes
    (relative to the input size) and scores agree within 1e-3 absolute; the ensemble's detections
    equal OpenCV's NMSBoxesBatched on OpenCV's candidates mapped back with the shared letterbox
    (same class, IoU > 0.99, score within 1e-3)."""
    detections = 0
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        for name, (image, geometry) in letterboxed.items():
            inputs = ensemble_inputs(image, geometry)[:1]
            result = client.infer("yolov3_backbone", inputs)
            boxes, scores = result.as_numpy("boxes")[0], result.as_numpy("scores")[0]
            want_boxes, want_scores = oracle.candidates(image)
            assert np.max(np.abs(boxes - want_boxes)) / image.shape[0] < CANDIDATES_ATOL, name
            shown = want_scores > 0  # OpenCV zeroes scores <= its threshold (0.2)
            assert np.max(np.abs(scores[shown] - want_scores[shown])) < CANDIDATES_ATOL, name
            assert np.max(scores[~shown]) <= oracle.score_floor + CANDIDATES_ATOL, name

            got = _detect(client, image, geometry, ALL_DETECTIONS)
            want = opencv_nms(want_boxes, want_scores, SCORE_THRESHOLD, IOU_THRESHOLD, 10_000)
            assert_same_detections(
                got, (geometry.to_original(want[0]), want[1], want[2]), SCORE_THRESHOLD
            )
            assert np.all(got[0] >= 0) and np.all(got[0][:, 2] <= geometry.width)
            assert np.all(got[0][:, 3] <= geometry.height)
            detections += len(got[1])
    assert detections > 10, "too few detections for the comparison after NMS to mean much"


def test_yolov3_request_parameters_override_the_config_defaults(
    triton: TritonServer, letterboxed: dict[str, tuple[np.ndarray, Letterbox]]
) -> None:
    image, geometry = letterboxed["astronaut"]
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        default = _detect(client, image, geometry)
        strict = _detect(client, image, geometry, {"score_threshold": 0.5})
        two = _detect(client, image, geometry, {"max_detections": 2})
        loose = _detect(client, image, geometry, {"iou_threshold": 0.9, "max_detections": 500})
    assert 2 < len(default[1]) <= 100 and np.all(default[1] > SCORE_THRESHOLD)
    assert np.all(strict[1] > 0.5) and len(strict[1]) < len(default[1])
    np.testing.assert_array_equal(strict[1], default[1][default[1] > 0.5])
    np.testing.assert_array_equal(two[1], default[1][:2])
    assert len(loose[1]) > len(default[1])


def test_yolov3_bad_request_fails_alone(
    triton: TritonServer, letterboxed: dict[str, tuple[np.ndarray, Letterbox]]
) -> None:
    """A nonsense image_shape or parameter inside a burst of good requests gets a clear error;
    the requests handled in the same execute() still get their detections."""
    image, geometry = letterboxed["coffee"]
    bad_shape = Letterbox(0, 640, 416, 1, 416, 207, 0)

    def call(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | InferenceServerException:
        try:
            with grpcclient.InferenceServerClient(triton.grpc_url) as client:
                if case == "bad shape":
                    return _detect(client, image, bad_shape)
                if case == "bad parameter":
                    return _detect(client, image, geometry, {"score_threshold": "high"})
                return _detect(client, image, geometry)
        except InferenceServerException as exc:
            return exc

    cases = ["good"] * 3 + ["bad shape", "bad parameter"] + ["good"] * 3
    with ThreadPoolExecutor(len(cases)) as pool:
        results = dict(enumerate(pool.map(call, cases)))
    assert "positive [height, width]" in str(results.pop(3))
    assert "score_threshold" in str(results.pop(4))
    first = results[0]
    assert not isinstance(first, InferenceServerException) and len(first[1]) > 0
    for result in results.values():
        assert not isinstance(result, InferenceServerException)
        np.testing.assert_allclose(result[1], first[1], atol=1e-5)


def test_yolov3_postprocess_rejects_boxes_and_scores_that_disagree(triton: TritonServer) -> None:
    """A direct caller sending fewer candidate boxes than score rows gets a clear INVALID_ARG
    error; good requests sent at the same time still get their detections. (Triton batches only
    requests of equal shapes, so those requests are checked per request in execute().)"""
    boxes = np.array([[[10, 10, 50, 50], [12, 12, 52, 52], [200, 200, 260, 260]]], np.float32)
    scores = np.zeros((1, 3, 80), np.float32)
    scores[0, :, 7] = [0.9, 0.8, 0.7]

    def call(rows: int) -> tuple[np.ndarray, np.ndarray] | InferenceServerException:
        inputs = [
            grpcclient.InferInput("candidate_boxes", [1, rows, 4], "FP32"),
            grpcclient.InferInput("candidate_scores", [1, 3, 80], "FP32"),
            grpcclient.InferInput("image_shape", [1, 2], "INT32"),
        ]
        inputs[0].set_data_from_numpy(boxes[:, :rows])
        inputs[1].set_data_from_numpy(scores)
        inputs[2].set_data_from_numpy(np.array([[416, 416]], np.int32))
        try:
            with grpcclient.InferenceServerClient(triton.grpc_url) as client:
                result = client.infer("yolov3_postprocess", inputs)
        except InferenceServerException as exc:
            return exc
        return result.as_numpy("scores")[0], result.as_numpy("classes")[0]

    cases = [3] * 3 + [2, 1] + [3] * 3
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(call, cases))
    for rows, result in zip(cases, results, strict=True):
        if rows < 3:
            assert isinstance(result, InferenceServerException), rows
            assert "same batch and candidate counts" in str(result)
            assert result.status() == "StatusCode.INVALID_ARGUMENT"
        else:
            assert not isinstance(result, InferenceServerException), result
            np.testing.assert_allclose(result[0], [0.9, 0.7])
            np.testing.assert_array_equal(result[1], [7, 7])
