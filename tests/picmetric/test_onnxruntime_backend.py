"""The Python-based `onnxruntime` backend: pure helpers, and batching inside a real Triton."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf.json_format import MessageToDict
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from core.model_config import read_config, write_config
from core.paths import MODEL_REPOSITORY
from picmetric.triton_server import TritonError, TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.tiny_models import GATHER_TABLE, write_gather_model
from tests.utils.triton_stats import settled


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
    with pytest.raises(
        TritonError, match="Output 'value' .*tensor\\(float\\) in the graph, TYPE_INT32"
    ):
        server.start(timeout=120)


def _graph_tensors(
    backend,
    tmp_path: Path,
    shape: list,  # type: ignore[no-untyped-def]
) -> tuple[dict, dict]:
    """The inputs and outputs check_tensors gets from ONNX Runtime for `y = Identity(x)` (FP32)
    with `shape` on both sides."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return backend.session_tensors(session.get_inputs()), backend.session_tensors(
        session.get_outputs()
    )


def _config(max_batch_size: int, x: list[int], y: list[int], **changes: object) -> dict:
    """A config as Triton hands it to a Python model (JSON): x in, y out, FP32."""
    config: dict = {
        "max_batch_size": max_batch_size,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": x}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": y}],
    }
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("graph_shape", "config", "refusal"),
    [
        # the config names an input the graph lacks
        (
            ["batch", 4],
            _config(8, [4], [4], input=[{"name": "z", "data_type": "TYPE_FP32", "dims": [4]}]),
            "has no input 'z'",
        ),
        # one input more than the graph has
        (
            ["batch", 4],
            _config(
                8,
                [4],
                [4],
                input=[
                    {"name": "x", "data_type": "TYPE_FP32", "dims": [4]},
                    {"name": "w", "data_type": "TYPE_FP32", "dims": [4]},
                ],
            ),
            "declares 2 input",
        ),
        # another input data type
        (
            ["batch", 4],
            _config(8, [4], [4], input=[{"name": "x", "data_type": "TYPE_UINT8", "dims": [4]}]),
            "Input 'x' .*tensor\\(float\\) in the graph, TYPE_UINT8",
        ),
        # an output the graph lacks
        (
            ["batch", 4],
            _config(8, [4], [4], output=[{"name": "q", "data_type": "TYPE_FP32", "dims": [4]}]),
            "has no output 'q'",
        ),
        # another rank
        (["batch", 4], _config(8, [4, 1], [4]), "Input 'x' .*\\[-1, 4, 1\\] in config"),
        # a fixed dimension that differs
        (["batch", 4], _config(8, [5], [4]), "Input 'x' .*\\[-1, 5\\] in config"),
        # batching, but the graph's first dimension is fixed
        ([1, 4], _config(8, [4], [4]), "Input 'x' .*no variable batch dimension"),
        # no batching, and the config leaves out the graph's batch dimension
        (["batch", 4], _config(0, [4], [4]), "Input 'x' .*\\[-1, 4\\] in the graph"),
        # an output whose fixed dimension the config calls variable (outputs match exactly)
        ([2, 4], _config(0, [2, 4], [-1, 4]), "Output 'y' .*\\[-1, 4\\] in config"),
    ],
)
def test_check_tensors_refuses_what_the_native_backend_refuses(
    backend,
    tmp_path: Path,
    graph_shape: list,
    config: dict,
    refusal: str,  # type: ignore[no-untyped-def]
) -> None:
    """The native onnxruntime backend's load-time checks (ValidateInputs / ValidateOutputs and
    CompareDimsSupported in triton-inference-server/onnxruntime_backend), each naming the tensor."""
    inputs, outputs = _graph_tensors(backend, tmp_path, graph_shape)
    with pytest.raises(backend.ConfigMismatch, match=refusal):
        backend.check_tensors(config, inputs, outputs, "model.onnx")


@pytest.mark.parametrize(
    ("graph_shape", "config"),
    [
        (["batch", 4], _config(8, [4], [4])),  # batch dimension left out of dims
        (["batch", "n"], _config(8, [-1], [-1])),  # a variable dimension stays variable
        ([2, "n"], _config(0, [2, 7], [2, -1])),  # an input's variable dimension takes any size
    ],
)
def test_check_tensors_accepts_what_the_native_backend_accepts(
    backend,
    tmp_path: Path,
    graph_shape: list,
    config: dict,  # type: ignore[no-untyped-def]
) -> None:
    inputs, outputs = _graph_tensors(backend, tmp_path, graph_shape)
    backend.check_tensors(config, inputs, outputs, "model.onnx")


@pytest.mark.slow
def test_every_committed_onnx_config_matches_its_converted_graph(
    backend,
    model_repository: Path,  # type: ignore[no-untyped-def]
) -> None:
    """What loads here loads on the GPU host: each committed config.pbtxt of an onnxruntime model
    passes the native backend's checks against the graph conversion writes (random weights)."""
    checked = []
    for folder in sorted(MODEL_REPOSITORY.iterdir()):
        if not (folder / "config.pbtxt").exists():
            continue
        config = read_config(folder)
        if config.backend != "onnxruntime":
            continue
        path = model_repository / folder.name / "1" / "model.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        backend.check_tensors(
            MessageToDict(config, preserving_proto_field_name=True),
            backend.session_tensors(session.get_inputs()),
            backend.session_tensors(session.get_outputs()),
            str(path),
        )
        checked.append(folder.name)
    assert len(checked) == 6, checked
