"""yolov3-tiny: the exported graph against OpenCV's darknet importer, and a Triton server whose
crafted weights make known boxes come out, which proves the letterbox undo and that concurrent
requests of different image sizes each get their own detections."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from conversion import yolov3
from core.preprocessing import letterbox, letterbox_geometry
from picmetric.triton_server import TritonPorts, TritonServer
from tests.conftest import TEST_SEED
from tests.utils.darknet_oracle import OpenCVDarknet, assert_same_detections, opencv_nms
from tests.utils.ports import free_port
from tests.utils.triton_stats import settled
from tests.utils.yolov3 import (
    CRAFTED_CLASS,
    copy_yolov3_repository,
    crafted_image,
    ensemble_inputs,
    postprocess_module,
    write_crafted_tiny_weights,
)

pytestmark = pytest.mark.slow

CFG = "yolov3-tiny.cfg"
# OpenCV and ONNX Runtime, same float32 weights: boxes in units of the input size (as darknet
# and OpenCV report them), scores in [0, 1]. Observed: ~5e-6 and ~1e-5.
CANDIDATES_ATOL = 1e-3
SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS = 0.25, 0.45, 1000


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """yolov3-tiny with random weights (seed 0) exported to a scratch repository: (ONNX file,
    weights file)."""
    repository = tmp_path_factory.mktemp("tiny")
    weights = yolov3.resolve("random", TEST_SEED, CFG)
    return yolov3.convert("random", TEST_SEED, repository, cfg=CFG), weights.path


def test_tiny_candidates_match_opencv_darknet_atol_1e3(
    tiny_onnx: tuple[Path, Path], photos: dict[str, np.ndarray]
) -> None:
    """Oracle: cv2.dnn.readNetFromDarknet on the same cfg and weights. Boxes (relative to the
    input size) and scores agree within 1e-3 absolute; after class-wise NMS the detections are
    the same (class, IoU > 0.99, score within 1e-3)."""
    onnx_path, weights_path = tiny_onnx
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    oracle = OpenCVDarknet(yolov3.cfg_path(CFG), weights_path)
    post = postprocess_module()
    settings = post.Settings(SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS, MAX_DETECTIONS)
    detections = 0
    for photo in photos.values():
        image, geometry = letterbox(photo)
        boxes, scores = (a[0] for a in session.run(["boxes", "scores"], {"image": image[None]}))
        want_boxes, want_scores = oracle.candidates(image)
        assert np.max(np.abs(boxes - want_boxes)) / image.shape[0] < CANDIDATES_ATOL
        shown = want_scores > 0  # OpenCV zeroes scores <= its threshold (0.2)
        assert np.max(np.abs(scores[shown] - want_scores[shown]), initial=0) < CANDIDATES_ATOL
        assert np.max(scores[~shown], initial=0) <= oracle.score_floor + CANDIDATES_ATOL

        shape = (geometry.height, geometry.width)
        (got,) = post.detect([boxes], [scores], [shape], [settings], image.shape[0])
        want = opencv_nms(want_boxes, want_scores, SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS)
        want_original = (geometry.to_original(want[0]), want[1], want[2])
        assert_same_detections((got.boxes, got.scores, got.classes), want_original, SCORE_THRESHOLD)
        detections += len(got.scores)
    assert detections > 0, "no detections at all: the comparison after NMS proved nothing"


@pytest.fixture(scope="module")
def crafted_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A Triton server with only the yolov3 models, its backbone yolov3-tiny with the crafted
    weights of tests/utils/yolov3.py."""
    scratch = tmp_path_factory.mktemp("crafted")
    weights = scratch / "crafted-tiny.weights"
    write_crafted_tiny_weights(weights)
    repository = copy_yolov3_repository(scratch / "repository")
    yolov3.convert(str(weights), TEST_SEED, repository, cfg=CFG)
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    with TritonServer(repository, ports, log_file=scratch / "tritonserver.log") as server:
        yield server


def _detect(
    client: grpcclient.InferenceServerClient, image: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image through the `yolov3` ensemble, as the README shows."""
    tensor, geometry = letterbox(image)
    result = client.infer("yolov3", ensemble_inputs(tensor, geometry))
    return tuple(result.as_numpy(name)[0] for name in ("boxes", "scores", "classes"))  # type: ignore[return-value]


@pytest.mark.integration
def test_known_box_comes_out_in_original_pixels_of_a_non_square_image(
    crafted_triton: TritonServer,
) -> None:
    """A 300 x 600 (w x h) image letterboxes to 208 x 416 at x = 104. The red patch lands in
    grid cell (row 10, column 13): the crafted network answers a 64-pixel box centred at (216,
    168) in the letterbox, which is x (184 - 104) * 300/208 ... (248 - 104) * 300/208 and
    y 136 * 600/416 ... 200 * 600/416 in the original."""
    image, _ = crafted_image(600, 300, (10, 13))
    with grpcclient.InferenceServerClient(crafted_triton.grpc_url) as client:
        boxes, scores, classes = _detect(client, image)
    assert classes.tolist() == [CRAFTED_CLASS]
    assert scores[0] > 0.99
    np.testing.assert_allclose(boxes[0], [115.385, 196.154, 207.692, 288.462], atol=0.01)


@pytest.mark.integration
def test_concurrent_requests_of_different_sizes_each_get_their_own_detections(
    crafted_triton: TritonServer,
) -> None:
    """24 requests at once, each image a different size with its patch in a different cell:
    Triton batches them (backbone executions < requests), and every answer is its own box."""
    cases = []
    for i in range(24):
        height, width = 200 + 37 * i, 900 - 29 * i
        inside = letterbox_geometry(height, width)  # cells wholly inside the image
        rows = range(-(-inside.top // 16), (inside.top + inside.new_height) // 16)
        columns = range(-(-inside.left // 16), (inside.left + inside.new_width) // 16)
        cell = (rows[i % len(rows)], columns[(i * 5) % len(columns)])
        image, box = crafted_image(height, width, cell)
        cases.append((image, letterbox(image)[1].to_original(box)[0]))

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with grpcclient.InferenceServerClient(crafted_triton.grpc_url) as client:
            return _detect(client, image)

    with grpcclient.InferenceServerClient(crafted_triton.grpc_url) as client:
        before = settled(lambda: client.get_inference_statistics("yolov3_backbone", as_json=True))
        with ThreadPoolExecutor(len(cases)) as pool:
            results = list(pool.map(detect, [image for image, _ in cases]))
        after = settled(lambda: client.get_inference_statistics("yolov3_backbone", as_json=True))
    for (image, want), (boxes, _, classes) in zip(cases, results, strict=True):
        assert classes.tolist() == [CRAFTED_CLASS], image.shape
        np.testing.assert_allclose(boxes[0], want, atol=0.05, err_msg=str(image.shape))
    executions = [int(s["model_stats"][0].get("execution_count", 0)) for s in (before, after)]
    assert 0 < executions[1] - executions[0] < len(cases)
