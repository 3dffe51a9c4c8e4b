"""The Python-based `onnxruntime` backend: pure helpers, and batching inside a real Triton."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from core.model_config import read_config, write_config
from picmetric.triton_server import TritonError, TritonPorts, TritonServer
from picmetric.triton_wheel import BACKENDS_SOURCE
from tests.utils.ports import free_port
from tests.utils.tiny_models import GATHER_TABLE, write_gather_model
from tests.utils.triton_stats import settled


@pytest.fixture(scope="module")
def backend() -> object:
    """The backend's model.py, importable because pb_utils is a plain Python file in the wheel."""
    import pytriton

    sys.path.insert(0, str(Path(pytriton.__file__).parent / "tritonserver/backends/python"))
    sys.path.insert(0, str(BACKENDS_SOURCE / "onnxruntime"))
    try:
        import model

        return model
    finally:
        del sys.path[:2]


def test_run_in_chunks_runs_a_few_rows_at_a_time_and_joins_the_outputs(backend) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.append(len(feed["image"]))
        return [feed["image"] * 2, feed["image"][:, :1]]

    image = np.arange(7 * 3).reshape(7, 3)
    doubled, first = backend.run_in_chunks(run, {"image": image}, 3)
    assert seen == [3, 3, 1]
    np.testing.assert_array_equal(doubled, image * 2)
    np.testing.assert_array_equal(first, image[:, :1])
    seen.clear()
    backend.run_in_chunks(run, {"image": image}, None)
    backend.run_in_chunks(run, {"image": image}, 7)
    assert seen == [7, 7]


def test_group_by_shape_keeps_equal_shapes_together(backend) -> None:  # type: ignore[no-untyped-def]
    a, b = np.zeros((1, 4, 4, 3), np.uint8), np.zeros((2, 5, 4, 3), np.uint8)
    groups = backend.group_by_shape([{"image": a}, {"image": b}, {"image": a}])
    assert sorted(groups.values()) == [[0, 2], [1]]


def test_split_rows_returns_each_request_its_rows(backend) -> None:  # type: ignore[no-untyped-def]
    parts = backend.split_rows(np.arange(6).reshape(6, 1), [1, 3, 2])
    assert [p.ravel().tolist() for p in parts] == [[0], [1, 2, 3], [4, 5]]


@pytest.fixture(scope="module")
def gather_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = tmp_path_factory.mktemp("tiny_repository")
    write_gather_model(repository)
    ports = TritonPorts(free_port(), free_port(), free_port())
    with TritonServer(repository, ports, log_file=repository.parent / "triton.log") as server:
        yield server


def _gather(server: TritonServer, index: int) -> float | InferenceServerException:
    data = np.array([[index]], np.int64)
    inputs = [grpcclient.InferInput("index", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(data)
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            return float(client.infer("gather", inputs).as_numpy("value")[0, 0])
    except InferenceServerException as exc:
        return exc


@pytest.mark.integration
def test_backend_batches_requests_and_a_failing_one_fails_alone(
    gather_server: TritonServer,
) -> None:
    """Index 7 is out of range, so ONNX Runtime rejects the joined batch; the backend retries
    one by one and only that request gets an error."""
    indices = [0, 1, 2, 3, 7, 3, 2, 1]
    with ThreadPoolExecutor(len(indices)) as pool:
        results = list(pool.map(lambda i: _gather(gather_server, i), indices))
    error = results.pop(4)
    assert isinstance(error, InferenceServerException) and "onnxruntime" in str(error)
    assert results == [float(GATHER_TABLE[i]) for i in [0, 1, 2, 3, 3, 2, 1]]
    with grpcclient.InferenceServerClient(gather_server.grpc_url) as client:
        stats = settled(lambda: client.get_inference_statistics("gather", as_json=True))
        stats = stats["model_stats"][0]
    assert int(stats["execution_count"]) < int(stats["inference_count"])


@pytest.mark.integration
def test_a_config_that_disagrees_with_the_model_fails_to_load(tmp_path: Path) -> None:
    """config.pbtxt says INT32 where the ONNX file gives float: the model must not load."""
    write_gather_model(tmp_path)
    config = read_config(tmp_path / "gather")
    config.output[0].data_type = model_config_pb2.TYPE_INT32  # value: FP32 in ONNX
    write_config(tmp_path / "gather", config)
    ports = TritonPorts(free_port(), free_port(), free_port())
    server = TritonServer(tmp_path, ports, log_file=tmp_path / "triton.log")
    with pytest.raises(TritonError, match="config.pbtxt says int32"):
        server.start(timeout=120)
