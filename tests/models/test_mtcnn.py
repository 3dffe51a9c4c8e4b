"""MTCNN through a real Triton server (the `mtcnn` BLS cascade over mtcnn_pnet/rnet/onet),
against the oracle `mtcnn.MTCNN().detect_faces()` with the same parameters."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conversion import mtcnn as converter
from core.triton_admin import grpc_admin_headers
from picmetric.triton_server import TritonServer
from tests.utils.mtcnn_faces import (
    MODEL,
    Detections,
    assert_same_faces,
    cascade,
    collage,
    infer,
    iou,
    oracle,
    photos,
)
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo
from tests.utils.triton_stats import settled

pytestmark = pytest.mark.integration

# Overrides that keep the package's own pyramid valid (with min_face_size much above 20 its
# pyramid goes below PNet's 12 px and it returns no faces at all; cascade.py documents this).
OVERRIDES = {
    "min_face_size": 15,
    "scale_factor": 0.8,
    "threshold_pnet": 0.7,
    "threshold_rnet": 0.8,
    "threshold_onet": 0.9,
}


@pytest.fixture(scope="module")
def client(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def detector() -> Any:
    """The oracle: the mtcnn package's detector with its shipped weights."""
    from mtcnn import MTCNN

    return MTCNN()


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {**photos(), "collage": collage()}


@pytest.mark.slow
def test_mtcnn_parity_with_mtcnn_package_iou95_score001_landmarks2px(
    client: grpcclient.InferenceServerClient, detector: Any, images: dict[str, np.ndarray]
) -> None:
    """Oracle: MTCNN().detect_faces(), default parameters, on real photos (camera is grayscale,
    sent as RGB; four have no face) and a collage of seven faces from 35 to 190 px."""
    for name, image in images.items():
        assert_same_faces(infer(client, image), oracle(detector, image), name)
    assert len(oracle(detector, images["collage"])) == 7


PHONE_MEGAPIXELS = (1, 3, 12)


@pytest.fixture(scope="module")
def phone_photos(detector: Any) -> dict[int, tuple[np.ndarray, Detections]]:
    """1, 3 and 12 MP JPEG photos (tests/utils/real_photos.py: six faces from 40 px to a quarter
    of the short side), decoded as the gateway decodes them, with the package's faces on them."""
    made = {}
    for megapixels in PHONE_MEGAPIXELS:
        image = decoded(jpeg_bytes(real_photo(megapixels)))
        want = oracle(detector, image)
        assert len(want) >= 5, f"the package finds only {len(want)} faces at {megapixels} MP"
        made[megapixels] = image, want
    return made


@pytest.mark.slow
@pytest.mark.parametrize("megapixels", PHONE_MEGAPIXELS)
def test_mtcnn_parity_at_phone_photo_sizes_iou95_score001_landmarks2px(
    client: grpcclient.InferenceServerClient,
    phone_photos: dict[int, tuple[np.ndarray, Detections]],
    megapixels: int,
) -> None:
    """Oracle: MTCNN().detect_faces(), default parameters, on 1, 3 and 12 MP phone photos."""
    image, want = phone_photos[megapixels]
    assert_same_faces(infer(client, image), want, f"{megapixels} MP")


@pytest.fixture
def pyramid_in_graph(
    client: grpcclient.InferenceServerClient, triton: TritonServer
) -> Iterator[None]:
    """`mtcnn` loaded with config.pbtxt's `pyramid` set to `graph` (Triton's load API with a
    config override, with the admin key), as a GPU host's `auto` chooses; the committed config is
    loaded back after."""
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["parameters"]["pyramid"]["string_value"] == "auto"
    config["parameters"]["pyramid"]["string_value"] = "graph"
    admin = grpc_admin_headers(triton.admin_key)
    client.load_model(MODEL, headers=admin, config=json.dumps(config))
    try:
        yield
    finally:
        client.unload_model(MODEL, headers=admin)
        client.load_model(MODEL, headers=admin)


@pytest.mark.slow
def test_mtcnn_with_the_pyramid_in_the_graph_at_phone_photo_sizes(
    client: grpcclient.InferenceServerClient,
    phone_photos: dict[int, tuple[np.ndarray, Detections]],
    pyramid_in_graph: None,
) -> None:
    """The same oracle with every pyramid level made by mtcnn_pyramid_pnet's graph, the path
    of a GPU host: mtcnn_pnet is not called at all."""
    for megapixels, (image, want) in phone_photos.items():
        before = settled(lambda: _request_counts(client))
        assert_same_faces(infer(client, image), want, f"{megapixels} MP, pyramid in the graph")
        after = settled(lambda: _request_counts(client))
        assert after["mtcnn_pnet"] == before["mtcnn_pnet"]
        assert after["mtcnn_pyramid_pnet"] > before["mtcnn_pyramid_pnet"]


@pytest.mark.slow
def test_mtcnn_parity_with_request_parameters(
    client: grpcclient.InferenceServerClient, detector: Any, images: dict[str, np.ndarray]
) -> None:
    """Oracle as above with min_face_size, scale_factor and the three thresholds overridden per
    request; as strings (how the gateway may send them) too."""
    for name in ("astronaut", "collage", "coffee"):
        want = oracle(detector, images[name], **OVERRIDES)
        assert_same_faces(infer(client, images[name], OVERRIDES), want, name)
    as_strings = {key: str(value) for key, value in OVERRIDES.items()}
    want = oracle(detector, images["collage"], **OVERRIDES)
    assert_same_faces(infer(client, images["collage"], as_strings), want, "collage (strings)")


def test_mtcnn_request_parameters_change_the_result(
    client: grpcclient.InferenceServerClient, images: dict[str, np.ndarray]
) -> None:
    default = infer(client, images["collage"])
    strict = infer(client, images["collage"], {"threshold_onet": 0.9999})  # two of the seven
    large_only = infer(client, images["collage"], {"min_face_size": 100})
    assert len(default) == 7
    assert 0 < len(strict) < len(default) and np.all(strict.scores > 0.9999)

    def smallest(faces: Detections) -> float:
        return float(np.min(faces.boxes[:, 2] - faces.boxes[:, 0]))

    # min_face_size sets the pyramid's first scale, not a hard size filter: the smallest face goes.
    assert 0 < len(large_only) < len(default) and smallest(large_only) > smallest(default)


@pytest.mark.slow
def test_mtcnn_keypoints_in_contract_order(
    client: grpcclient.InferenceServerClient, detector: Any, images: dict[str, np.ndarray]
) -> None:
    """landmarks[:, k] is left_eye, right_eye, nose, mouth_left, mouth_right: the names of the
    package's JSON answer (which rounds to whole pixels)."""
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    (face,) = detector.detect_faces(images["astronaut"])
    got = infer(client, images["astronaut"]).landmarks[0]
    want = np.array([face["keypoints"][name] for name in names], np.float32)
    assert np.abs(got - want).max() <= 0.5 + 1e-3


def test_mtcnn_over_http(triton: TritonServer, images: dict[str, np.ndarray]) -> None:
    image = images["astronaut"]
    inputs = [httpclient.InferInput("image", list(image.shape), "UINT8")]
    inputs[0].set_data_from_numpy(image, binary_data=True)
    result = httpclient.InferenceServerClient(triton.http_url).infer("mtcnn", inputs)
    assert result.as_numpy("boxes").shape == (1, 4)
    assert result.as_numpy("landmarks").shape == (1, 5, 2)
    assert result.as_numpy("scores")[0] > 0.99


@pytest.mark.parametrize("shape", [(11, 11, 3), (11, 600, 3), (1, 600, 3), (600, 1, 3)])
def test_mtcnn_image_smaller_than_pnet_window_has_no_faces(
    client: grpcclient.InferenceServerClient, shape: tuple[int, int, int]
) -> None:
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    faces = infer(client, image)
    assert faces.boxes.shape == (0, 4)
    assert faces.scores.shape == (0,)
    assert faces.landmarks.shape == (0, 5, 2)


@pytest.mark.slow
def test_mtcnn_4000x3000_photo_matches_the_package(
    client: grpcclient.InferenceServerClient, detector: Any, images: dict[str, np.ndarray]
) -> None:
    """A 12-megapixel image (the astronaut stretched to 4000x3000) works and agrees."""
    image = cv2.resize(images["astronaut"], (4000, 3000), interpolation=cv2.INTER_LINEAR)
    got = infer(client, image)
    assert_same_faces(got, oracle(detector, image), "astronaut 4000x3000")
    assert len(got) == 1


def test_mtcnn_bad_requests_fail_alone_with_clear_errors(
    triton: TritonServer, client: grpcclient.InferenceServerClient, images: dict[str, np.ndarray]
) -> None:
    """Bad parameters and wrong inputs get an error each; good requests sent at the same time
    get their faces, and the model stays ready."""
    good = images["astronaut"]
    large = cv2.resize(good, (4000, 3000), interpolation=cv2.INTER_NEAREST)
    cases: list[tuple[np.ndarray, str, dict[str, Any] | None, str]] = [
        (good, "UINT8", {"min_face": 40}, "Unknown parameter 'min_face'"),
        (good, "UINT8", {"scale_factor": 1.5}, "scale_factor must be > 0 and at most 0.9"),
        (large, "UINT8", {"scale_factor": 0.999}, "scale_factor must be > 0 and at most 0.9"),
        (large, "UINT8", {"min_face_size": 12, "scale_factor": 0.9}, "lower scale_factor"),
        (good, "UINT8", {"threshold_onet": "high"}, "must be a number"),
        (good, "UINT8", {"min_face_size": 1}, "raise min_face_size"),
        (good[..., :2], "UINT8", None, "image"),  # two channels
        (good.astype(np.float32), "FP32", None, "data-type"),
    ]

    def bad(case: tuple[np.ndarray, str, dict[str, Any] | None, str]) -> str:
        image, dtype, parameters, _ = case
        inputs = [grpcclient.InferInput("image", list(image.shape), dtype)]
        inputs[0].set_data_from_numpy(image)
        with pytest.raises(InferenceServerException) as error:
            with grpcclient.InferenceServerClient(triton.grpc_url) as c:
                c.infer("mtcnn", inputs, parameters=parameters)
        return str(error.value)

    with ThreadPoolExecutor(8) as pool:
        good_results = [pool.submit(infer, client, good) for _ in range(4)]
        messages = list(pool.map(bad, cases))
        faces = [f.result() for f in good_results]
    for (_, _, _, expected), message in zip(cases, messages, strict=True):
        assert expected in message
    assert all(len(f) == 1 for f in faces)
    assert client.is_model_ready("mtcnn")


def test_mtcnn_request_with_nothing_filtered_does_bounded_work_beside_good_requests(
    triton: TritonServer, client: grpcclient.InferenceServerClient, images: dict[str, np.ndarray]
) -> None:
    """threshold_pnet=0 makes every PNet cell of the 1200x800 collage a proposal (~150k) and no
    threshold or NMS drops any: the request still finishes, with at most PNET_TOP_K boxes, and
    good requests sent at the same time get their faces."""
    worst = {
        **dict.fromkeys(("threshold_pnet", "threshold_rnet", "threshold_onet"), 0),
        **dict.fromkeys(("nms_pnet1", "nms_pnet2", "nms_rnet", "nms_onet"), 1),
    }

    def one(parameters: dict[str, Any] | None) -> Detections:
        with grpcclient.InferenceServerClient(triton.grpc_url) as c:
            return infer(c, images["collage"] if parameters else images["astronaut"], parameters)

    with ThreadPoolExecutor(5) as pool:
        flooded = pool.submit(one, worst)
        good = list(pool.map(one, [None] * 4))
        everything = flooded.result()
    assert all(len(f) == 1 for f in good)
    assert 0 < len(everything) <= cascade().PNET_TOP_K
    assert client.is_model_ready("mtcnn")


def test_mtcnn_concurrent_requests_get_their_own_faces(
    triton: TritonServer, images: dict[str, np.ndarray]
) -> None:
    """Different images in flight together (sharing RNet/ONet batches) each get the answer they
    get alone."""
    astronaut = images["astronaut"]
    variants = {
        "astronaut": astronaut,
        "mirrored": np.ascontiguousarray(astronaut[:, ::-1]),
        "camera": images["camera"],
        "collage": images["collage"],
        "coffee": images["coffee"],
        "small": cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA),
    }
    with grpcclient.InferenceServerClient(triton.grpc_url) as c:
        alone = {name: infer(c, image) for name, image in variants.items()}
    order = list(variants) * 3
    random.Random(0).shuffle(order)

    def one(name: str) -> Detections:
        with grpcclient.InferenceServerClient(triton.grpc_url) as c:
            return infer(c, variants[name])

    with ThreadPoolExecutor(len(order)) as pool:
        together = list(pool.map(one, order))
    for name, got in zip(order, together, strict=True):
        want = alone[name]
        assert len(got) == len(want), name
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.01, err_msg=name)
        np.testing.assert_allclose(got.landmarks, want.landmarks, atol=0.01, err_msg=name)
    assert len(alone["collage"]) == 7 and len(alone["coffee"]) == 0
    unmirrored = alone["mirrored"].boxes.copy()
    unmirrored[:, [0, 2]] = astronaut.shape[1] - 1 - unmirrored[:, [2, 0]]
    assert iou(unmirrored, alone["astronaut"].boxes)[0, 0] > 0.85


def _request_counts(client: grpcclient.InferenceServerClient) -> dict[str, int]:
    counts = {}
    for model in ("mtcnn_pnet", "mtcnn_pyramid_pnet", "mtcnn_rnet", "mtcnn_onet"):
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        counts[model] = int(stats["inference_stats"]["success"].get("count", 0))
    return counts


def test_mtcnn_runs_pnet_per_pyramid_level_and_one_rnet_and_onet_request(
    client: grpcclient.InferenceServerClient, images: dict[str, np.ndarray]
) -> None:
    image = images["collage"]
    params = cascade("parameters").Parameters()
    levels = cascade("pyramid").pyramid_scales(
        *image.shape[:2], params.min_face_size, params.scale_factor
    )
    want = {"mtcnn_pnet": len(levels), "mtcnn_pyramid_pnet": 0, "mtcnn_rnet": 1, "mtcnn_onet": 1}
    before = settled(lambda: _request_counts(client))
    infer(client, image)
    after = settled(lambda: _request_counts(client))
    assert {model: after[model] - before[model] for model in after} == want


def test_mtcnn_networks_record_the_package_weights(model_repository: Path) -> None:
    source = converter.package_source()
    assert source == "mtcnn==1.0.0"
    for network in converter.NETWORKS:
        record_file = model_repository / network.model / "1" / "provenance.json"
        record = json.loads(record_file.read_text())
        weights = converter.package_weights(network)
        assert record["weights"]["kind"] == "pretrained"
        assert record["weights"]["sha256"] == weights.sha256
        assert record["weights"]["source"].startswith(source)
        assert record["validation_max_abs_diff"] < converter.VALIDATION_ATOL
