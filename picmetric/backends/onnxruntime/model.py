"""A Python-based Triton backend named `onnxruntime`, for machines whose Triton has no native
ONNX Runtime backend (the CPU server from the nvidia-pytriton wheel). Models keep
`backend: "onnxruntime"` and load through the Python backend; the NGC image uses its native backend
with the same config.pbtxt. At load, `check_tensors` refuses a config that the native backend
refuses (its ValidateInputs / ValidateOutputs), so what loads here loads there.

All requests of one execute() whose inputs share shapes are concatenated along the batch
dimension and run as one ONNX Runtime call, so Triton's dynamic batching pays off here too.

Memory: `parameters { key: "max_rows_per_run" ... }` (ours; the native backend ignores it) makes
ONNX Runtime run a dynamic batch a few rows at a time. On the CPU a larger run computes no faster,
but ONNX Runtime's arena grows with it (what yolov3_backbone measured: model_repository/README.md).

Threads: `parameters { key: "intra_op_thread_count" ... }` (the native backend's parameter name)
sets ONNX Runtime's intra-op threads per instance; 0 or absent lets ONNX Runtime use every
physical core, which suits one busy model per machine. Inter-op threads stay at 1, and idle
intra-op threads sleep instead of spinning: several models' sessions and Triton's own threads
share the cores here, and spinning threads starved them (ResNet50 through Triton went from 0.56x
to about 0.9x of raw onnxruntime's images/s on 2 cores).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _parameter(config: dict, key: str, default: str) -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


def group_by_shape(feeds: list[dict[str, np.ndarray]]) -> dict[tuple, list[int]]:
    """Indices of feeds whose inputs have identical non-batch shapes and dtypes."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, feed in enumerate(feeds):
        signature = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feed.items()))
        groups[signature].append(index)
    return groups


def run_in_chunks(
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
    feed: dict[str, np.ndarray],
    rows: int | None,
) -> list[np.ndarray]:
    """`run(feed)`, on at most `rows` rows of the batch at a time (None: all at once), with the
    outputs joined back."""
    total = len(next(iter(feed.values())))
    if rows is None or total <= rows:
        return run(feed)
    parts = [
        run({name: array[start : start + rows] for name, array in feed.items()})
        for start in range(0, total, rows)
    ]
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def split_rows(array: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Split a batched output back into per-request arrays of `sizes` rows."""
    return np.split(array, np.cumsum(sizes)[:-1])


# config.pbtxt's data types and ONNX Runtime's names for them (the native backend's table).
ORT_TYPES = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_UINT16": "tensor(uint16)",
    "TYPE_UINT32": "tensor(uint32)",
    "TYPE_UINT64": "tensor(uint64)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
    "TYPE_STRING": "tensor(string)",
}


class ConfigMismatch(ValueError):
    """config.pbtxt and the ONNX graph disagree on a tensor: NGC's native onnxruntime backend
    refuses to load such a model, so this stand-in refuses too."""


def graph_shape(shape: list) -> list[int]:
    """ONNX Runtime's shape with every symbolic or unknown dimension as -1, as the native backend
    sees it (ONNX Runtime's own shape inference may have made a declared symbol concrete)."""
    return [dim if isinstance(dim, int) else -1 for dim in shape]


def _config_dims(tensor: dict) -> list[int]:
    """The shape the graph must have: `reshape` when the config gives one, else `dims`."""
    if "reshape" in tensor:
        return [int(dim) for dim in tensor["reshape"].get("shape", [])]
    return [int(dim) for dim in tensor.get("dims", [])]


def _dims_problem(graph: list[int], dims: list[int], batched: bool, exact: bool) -> str | None:
    """The native backend's rule, or None when it holds: with batching the graph's first
    dimension must be variable (-1) and the rest must match `dims`; a graph dimension of -1
    accepts any size in an input, but an output's must say -1 in the config too (`exact`)."""
    if not graph:  # a scalar: the config may only say 1s
        return (
            None
            if all(dim == 1 for dim in dims)
            else f"a scalar in the graph, {dims} in config.pbtxt"
        )
    if batched and graph[0] != -1:
        return (
            f"shape {graph} in the graph has no variable batch dimension first, which "
            "max_batch_size > 0 needs"
        )
    want = [-1, *dims] if batched else dims
    if len(graph) == len(want) and all(
        g == w or (g == -1 and not exact) for g, w in zip(graph, want, strict=False)
    ):
        return None
    batch = " (the batch dimension first, since max_batch_size > 0)" if batched else ""
    return f"shape {graph} in the graph, {want} in config.pbtxt{batch}"


def check_tensors(
    config: dict,
    inputs: dict[str, tuple[str, list[int]]],
    outputs: dict[str, tuple[str, list[int]]],
    path: str,
) -> None:
    """Refuse what NGC's native onnxruntime backend refuses at load: an input count that differs,
    a tensor the graph lacks, another data type, another rank, a fixed dimension that differs, a
    batched model whose graph has no variable batch dimension. `inputs` and `outputs` map the
    graph's tensor names to (ONNX Runtime type, graph_shape)."""
    batched = config.get("max_batch_size", 0) > 0
    declared = config.get("input", [])
    required = [tensor for tensor in declared if not tensor.get("optional", False)]
    if len(required) != len(inputs):
        raise ConfigMismatch(
            f"{path}: config.pbtxt declares {len(required)} input(s), the graph has "
            f"{len(inputs)} ({', '.join(sorted(inputs))})."
        )
    for kind, tensors, graph, exact in (
        ("input", declared, inputs, False),
        ("output", config.get("output", []), outputs, True),
    ):
        for tensor in tensors:
            name = tensor["name"]
            if name not in graph:
                raise ConfigMismatch(
                    f"{path} has no {kind} '{name}' (it has {', '.join(sorted(graph))})."
                )
            onnx_type, shape = graph[name]
            if ORT_TYPES.get(tensor["data_type"]) != onnx_type:
                problem: str | None = (
                    f"{onnx_type} in the graph, {tensor['data_type']} in config.pbtxt"
                )
            else:
                problem = _dims_problem(shape, _config_dims(tensor), batched, exact)
            if problem:
                raise ConfigMismatch(f"{kind.capitalize()} '{name}' of {path}: {problem}.")


def session_tensors(args: list) -> dict[str, tuple[str, list[int]]]:
    """What check_tensors needs from `session.get_inputs()` or `get_outputs()`."""
    return {arg.name: (arg.type, graph_shape(arg.shape)) for arg in args}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(config, "intra_op_thread_count", "0"))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.batched = config.get("max_batch_size", 0) > 0
        rows = int(_parameter(config, "max_rows_per_run", "0"))
        self.rows_per_run = rows if rows > 0 and self.batched else None
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]
        check_tensors(
            config,
            session_tensors(self.session.get_inputs()),
            session_tensors(self.session.get_outputs()),
            path,
        )

    def execute(self, requests: list) -> list:
        feeds = [self._feed(request) for request in requests]
        responses: list = [None] * len(requests)
        if not self.batched:
            for index, feed in enumerate(feeds):
                responses[index] = self._respond(lambda f=feed: self._run(f))
            return responses
        for indices in group_by_shape(feeds).values():
            self._run_group([feeds[i] for i in indices], indices, responses)
        return responses

    def _feed(self, request) -> dict[str, np.ndarray]:
        return {
            name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            for name in self.input_names
        }

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = [name for name, _ in self.outputs]
        return run_in_chunks(lambda f: self.session.run(names, f), feed, self.rows_per_run)

    def _run_group(self, feeds: list[dict], indices: list[int], responses: list) -> None:
        sizes = [next(iter(feed.values())).shape[0] for feed in feeds]
        joined = {name: np.concatenate([f[name] for f in feeds]) for name in self.input_names}
        try:
            outputs = self._run(joined)
        except Exception:  # one bad request must not fail its neighbours: retry one by one
            for index, feed in zip(indices, feeds, strict=True):
                responses[index] = self._respond(lambda f=feed: self._run(f))
            return
        per_request = [split_rows(output, sizes) for output in outputs]
        for position, index in enumerate(indices):
            parts = [parts[position] for parts in per_request]
            responses[index] = self._respond(lambda p=parts: p)

    def _respond(self, compute) -> pb_utils.InferenceResponse:
        try:
            arrays = compute()
        except Exception as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {exc}"))
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(array, dtype=dtype))
            for (name, dtype), array in zip(self.outputs, arrays, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)
