"""ResNet50 through a real Triton server, against Keras (the oracle) with the same weights."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conversion import resnet50
from core.preprocessing import resize_for_resnet50
from picmetric.triton_server import TritonServer
from tests.conftest import TEST_SEED
from tests.utils.triton_stats import settled

pytestmark = pytest.mark.integration

MODEL = "resnet50"
# Float32 softmax from two runtimes on the same weights; they agree to ~1e-7 in practice.
PARITY_ATOL = 1e-4


def _batch(photos: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([resize_for_resnet50(p) for p in photos.values()])


def _infer_grpc(client: grpcclient.InferenceServerClient, batch: np.ndarray) -> np.ndarray:
    inputs = [grpcclient.InferInput("image", list(batch.shape), "UINT8")]
    inputs[0].set_data_from_numpy(batch)
    return client.infer(MODEL, inputs).as_numpy("probabilities")


def _infer_http(client: httpclient.InferenceServerClient, batch: np.ndarray) -> np.ndarray:
    inputs = [httpclient.InferInput("image", list(batch.shape), "UINT8")]
    inputs[0].set_data_from_numpy(batch, binary_data=True)
    return client.infer(MODEL, inputs).as_numpy("probabilities")


@pytest.fixture(scope="module")
def keras_probabilities(model_repository: Path, photos: dict[str, np.ndarray]) -> np.ndarray:
    """The oracle: keras.applications.ResNet50 loading the very weights file the export used,
    with Keras' own "caffe" preprocess_input."""
    import keras
    from keras.applications.resnet50 import preprocess_input

    weights = resnet50.resolve("random", TEST_SEED)
    provenance = json.loads((model_repository / MODEL / "1" / "provenance.json").read_text())
    assert provenance["weights"]["sha256"] == weights.sha256, "Triton serves other weights"
    model = keras.applications.ResNet50(weights=str(weights.path))
    return model.predict(preprocess_input(_batch(photos).astype(np.float32)), verbose=0)


@pytest.mark.slow
def test_resnet50_parity_with_keras_grpc_and_http_atol_1e4(
    triton: TritonServer, photos: dict[str, np.ndarray], keras_probabilities: np.ndarray
) -> None:
    """Oracle: Keras ResNet50, same weights. Identical top-5 and max abs diff < 1e-4."""
    batch = _batch(photos)
    with grpcclient.InferenceServerClient(triton.grpc_url) as g:
        by_grpc = _infer_grpc(g, batch)
    by_http = _infer_http(httpclient.InferenceServerClient(triton.http_url), batch)
    for got in (by_grpc, by_http):
        assert got.shape == (len(photos), 1000)
        assert np.max(np.abs(got - keras_probabilities)) < PARITY_ATOL
        top5 = np.argsort(-got, axis=1)[:, :5]
        np.testing.assert_array_equal(top5, np.argsort(-keras_probabilities, axis=1)[:, :5])


def test_resnet50_classification_extension_returns_label_names(
    triton: TritonServer, model_repository: Path, photos: dict[str, np.ndarray]
) -> None:
    """class_count=5 makes Triton answer "score:index:label" from label_filename."""
    labels = (model_repository / MODEL / "imagenet_labels.txt").read_text().splitlines()
    batch = _batch(photos)[:1]
    inputs = [grpcclient.InferInput("image", list(batch.shape), "UINT8")]
    inputs[0].set_data_from_numpy(batch)
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        wanted = [grpcclient.InferRequestedOutput("probabilities", class_count=5)]
        top = client.infer(MODEL, inputs, outputs=wanted).as_numpy("probabilities")[0]
        probabilities = _infer_grpc(client, batch)[0]
    entries = [entry.decode().split(":") for entry in top]
    indices = [int(index) for _, index, _ in entries]
    assert indices == list(np.argsort(-probabilities)[:5])
    assert [label for _, _, label in entries] == [labels[i] for i in indices]
    assert labels[21] == "kite" and labels[22] == "bald_eagle"


def _statistics(client: grpcclient.InferenceServerClient) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    return settled(read)


def test_resnet50_dynamic_batching_runs_fewer_executions_than_inferences(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    images = [resize_for_resnet50(p)[None] for p in photos.values()] * 6
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        inferences_before, executions_before = _statistics(client)
        with ThreadPoolExecutor(len(images)) as pool:
            results = list(pool.map(lambda image: _infer_grpc(client, image), images))
        inferences, executions = _statistics(client)
    assert all(r.shape == (1, 1000) for r in results)
    assert inferences - inferences_before == len(images)
    assert 0 < executions - executions_before < len(images)


def test_resnet50_malformed_request_fails_alone(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """A request with the wrong shape inside a burst of good ones gets a clear error; its
    neighbours (batched together by Triton) still get their answers."""
    good = [resize_for_resnet50(p)[None] for p in photos.values()] * 3
    bad = np.zeros((1, 224, 200, 3), np.uint8)
    requests = [*good[:4], bad, *good[4:]]

    def infer(batch: np.ndarray) -> np.ndarray | InferenceServerException:
        try:
            with grpcclient.InferenceServerClient(triton.grpc_url) as client:
                return _infer_grpc(client, batch)
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(infer, requests))
    error = results.pop(4)
    assert isinstance(error, InferenceServerException)
    assert "shape" in str(error) and "image" in str(error)
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 1000) for r in results)
