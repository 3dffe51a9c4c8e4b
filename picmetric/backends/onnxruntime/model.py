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

Engine: `optimization { execution_accelerators { cpu_execution_accelerator { name: "openvino" } } }`
(the native backend's OpenVINO execution accelerator, written by `picmetric cpu-engine`) makes this
stand-in compile the ONNX file with OpenVINO's Python API instead of opening an ONNX Runtime
session; any other accelerator name is refused, as the native backend refuses it. The accelerator's
`inference_precision` parameter ("FP32", the default, or "BF16") is ours: it becomes OpenVINO's
INFERENCE_PRECISION_HINT here, while NGC's backend passes OpenVINO only its device ("CPU") and
ignores the accelerator's parameters. A host whose CPU lacks BF16 (OpenVINO's
OPTIMIZATION_CAPABILITIES) runs FP32 instead and says so in Triton's log, so one config serves a
mixed fleet; a host without the `openvino` package refuses to load the model. Each model says at
load which engine and precision it runs. OpenVINO compiles the graph once with its dynamic
dimensions and specialises it per input shape on first use, keeping a bounded cache of those
(`openvino_runtime_cache_capacity`, ours; RUNTIME_CACHE below says what was measured).
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

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


# --- engines ---------------------------------------------------------------------------------

OPENVINO = "openvino"  # the native backend's name for its OpenVINO execution accelerator
PRECISION = "inference_precision"  # our accelerator parameter; NGC's backend ignores it
# config.pbtxt's precisions and OpenVINO's INFERENCE_PRECISION_HINT values for them.
OPENVINO_PRECISIONS = {"FP32": "f32", "BF16": "bf16"}


class EngineError(ValueError):
    """An engine or precision that config.pbtxt asks for and this stand-in (or host) cannot run."""


@dataclass(frozen=True)
class Engine:
    """What config.pbtxt asks a model to run on: `onnxruntime` (no accelerator) or `openvino`
    at `precision` (FP32 or BF16)."""

    name: str = "onnxruntime"
    precision: str = "FP32"


def requested_engine(config: dict) -> Engine:
    """The engine of a config as Triton hands it to a Python model (JSON). Refuses what the
    native backend refuses (an accelerator other than openvino) and a precision we do not know."""
    accelerators = (
        config.get("optimization", {})
        .get("execution_accelerators", {})
        .get("cpu_execution_accelerator", [])
    )
    engine = Engine()
    for accelerator in accelerators:
        name = accelerator.get("name", "")
        if name != OPENVINO:
            raise EngineError(f"unknown Execution Accelerator '{name}' is requested")
        precision = accelerator.get("parameters", {}).get(PRECISION, "FP32").upper()
        if precision not in OPENVINO_PRECISIONS:
            raise EngineError(
                f"The openvino accelerator's {PRECISION} is '{precision}'; it must be one of "
                f"{', '.join(OPENVINO_PRECISIONS)} (picmetric cpu-engine writes it)."
            )
        engine = Engine(OPENVINO, precision)
    return engine


def host_precision(requested: str, capabilities: list[str]) -> tuple[str, str]:
    """The precision to run at on a CPU whose OpenVINO OPTIMIZATION_CAPABILITIES are
    `capabilities`, and why: BF16 where the CPU has it, FP32 instead where it has not."""
    if requested == "BF16" and "BF16" not in capabilities:
        return "FP32", (
            "BF16 requested, but this CPU has no BF16 units (OpenVINO's capabilities: "
            f"{', '.join(capabilities)}); running FP32 instead"
        )
    return requested, f"{requested} requested"


# Entries of OpenVINO's per-shape runtime cache (CPU_RUNTIME_CACHE_CAPACITY; OpenVINO's default
# is 5000). PNet on 400 new shapes: RSS +270 MB with the default, +100 MB and flat with 100; an
# evicted shape costs about 2 ms again on its next call (BENCHMARKS.md, "CPU engines").
RUNTIME_CACHE = 100


class OpenVINORunner:
    """One OpenVINO CPU compilation of an ONNX file with its dynamic dimensions kept, and one
    infer request (execute() calls arrive one at a time per instance). OpenVINO specialises the
    graph for each new input shape on its first call and keeps the specialisations in an LRU
    cache of `cache_capacity` entries: measured on PNet, a new shape's first call costs about
    2 ms more than its later ones, where compiling a fixed-shape copy costs 20-35 ms."""

    def __init__(self, path: str, precision: str, threads: int, cache_capacity: int) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise EngineError(
                "config.pbtxt asks for the openvino accelerator, but the Python that runs "
                "Triton's stub has no `openvino` package: install the `triton` extra "
                "(pip install -e '.[triton]'), or `picmetric cpu-engine onnxruntime`."
            ) from exc
        core = ov.Core()
        capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self.precision, self.reason = host_precision(precision, capabilities)
        properties: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "CPU_RUNTIME_CACHE_CAPACITY": str(cache_capacity),
        }
        if threads > 0:
            properties["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(path, "CPU", properties)
        self.request = self.compiled.create_infer_request()
        self.version = ov.get_version()

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(feed)  # outputs copied out of OpenVINO's buffers
        return [results[name] for name in names]


def _log(message: str) -> None:
    """One line in Triton's log (the stub's Logger where it has one)."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(message)
    else:
        print(message, file=sys.stderr, flush=True)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        engine = requested_engine(config)
        threads = int(_parameter(config, "intra_op_thread_count", "0"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime reads the graph as the native backend does, with or without OpenVINO
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.batched = config.get("max_batch_size", 0) > 0
        rows = int(_parameter(config, "max_rows_per_run", "0"))
        self.rows_per_run = rows if rows > 0 and self.batched else None
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]
        check_tensors(
            config,
            session_tensors(session.get_inputs()),
            session_tensors(session.get_outputs()),
            path,
        )
        names = [name for name, _ in self.outputs]
        if engine.name == OPENVINO:
            del session
            capacity = int(_parameter(config, "openvino_runtime_cache_capacity", "0"))
            runner = OpenVINORunner(path, engine.precision, threads, capacity or RUNTIME_CACHE)
            self.engine = f"OpenVINO {runner.version} at {runner.precision} ({runner.reason})"
            self.infer: Callable[[dict[str, np.ndarray]], list[np.ndarray]] = lambda feed: (
                runner.run(names, feed)
            )
        else:
            self.engine = f"ONNX Runtime {ort.__version__} at FP32"
            self.infer = lambda feed: session.run(names, feed)
        _log(f"{config['name']}: {self.engine}")

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
        return run_in_chunks(self.infer, feed, self.rows_per_run)

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
