"""What the benchmarks measure with: Markdown tables, the machine, ONNX FLOPs, process memory
from /proc, median wall times."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

Memory = dict[str, tuple[float, float]]  # process -> (VmHWM, VmRSS) MB


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get one decimal."""

    def cell(value: object) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = [headers, ["---"] * len(headers), *[[cell(v) for v in row] for row in rows]]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"nproc {len(os.sched_getaffinity(0))}, {cpu}, onnxruntime {ort.__version__}"


def conv_flops(model_path: Path, input_shape: Sequence[int]) -> int:
    """2 x multiply-accumulates of every Conv, Gemm and MatMul node of an ONNX model for one
    concrete input shape, from ONNX shape inference (bias additions and the rest not counted).
    The useful work only: a convolution's all-zero filters and the negated copies of earlier
    filters (mtcnn_onnx.py adds both for speed) are left out."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    initializers = {t.name: list(t.dims) for t in model.graph.initializer}
    (image,) = [i for i in model.graph.input if i.name not in initializers]
    dims = image.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{model_path} takes {len(dims)} dimensions, not {len(input_shape)}")
    for dim, value in zip(dims, input_shape, strict=True):
        dim.Clear()
        dim.dim_value = int(value)
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).graph
    shapes: dict[str, list[int | None]] = dict(initializers)
    for info in [*graph.input, *graph.value_info, *graph.output]:
        shapes[info.name] = [
            d.dim_value if d.HasField("dim_value") else None
            for d in info.type.tensor_type.shape.dim
        ]
    total = 0
    for node in graph.node:
        useful = 1.0  # the share of a convolution's output channels that are real work
        if node.op_type == "Conv":  # weight [out, in / groups, *kernel]
            inner = shapes[node.input[1]][1:]
            kernel = weights[node.input[1]]
            useful = distinct_filters(kernel) / len(kernel)
        elif node.op_type == "Gemm":
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            inner = [shapes[node.input[0]][0 if trans_a else -1]]
        elif node.op_type == "MatMul":
            inner = [shapes[node.input[0]][-1]]
        else:
            continue
        dims_used = [*shapes.get(node.output[0], [None]), *inner]
        if any(d is None for d in dims_used):
            raise ValueError(f"{model_path}: shape inference left {node.name} partly unknown")
        total += round(2 * useful * math.prod(d for d in dims_used if d is not None))
    return total


def distinct_filters(kernel: np.ndarray) -> int:
    """Filters [out, ...] that are neither all zero nor the negation of an earlier one."""
    seen: list[np.ndarray] = []
    for f in kernel.reshape(len(kernel), -1):
        if np.any(f) and not any(np.array_equal(f, -g) for g in seen):
            seen.append(f)
    return len(seen)


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (/proc/PID/stat): what a call
    costs in CPU, which other load on a shared machine slows but does not add to."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_S


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return sorted(found)


def process_label(pid: int) -> str:
    """tritonserver, a stub's model instance (e.g. mtcnn_0_1), or the gateway."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if "triton_python_backend_stub" in args[0] and len(args) > 1:
        model = Path(args[1]).parent.parent.name
        pattern = re.compile(rf"{re.escape(model)}_\d+_\d+")
        return next((a for a in args if pattern.fullmatch(a)), model) + " (stub)"
    if "gateway" in args:
        return "gateway (uvicorn)"
    return Path(args[0]).name


def memory(pids: Sequence[int]) -> Memory:
    """(VmHWM, VmRSS) in MB by process label."""
    result: Memory = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            label = process_label(pid)
        except OSError:
            continue
        kb = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.MULTILINE))
        if kb:
            result[label] = (int(kb["VmHWM"]) / 1024, int(kb["VmRSS"]) / 1024)
    return result


def median_seconds(repeats: int, fn: Callable[[], object]) -> float:
    """Median wall time of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
