"""Real-size phone photos (1, 3 and 12 MP JPEGs from tests/utils/real_photos.py), in one run on
the same photos:

- through the gateway (`POST /v1/analyze`, multipart upload, all three models, a new threshold
  per request so the result cache never answers) at each concurrency: median and p99 latency,
  photos/s, and the split by stage (`timings_ms`) and by model (`models[].latency_ms`; the three
  models run at the same time, so those overlap);
- the mtcnn package (`MTCNN().detect_faces()`, the oracle) in-process on the same decoded photo,
  against the gateway with all three models at the lowest concurrency;
- the MTCNN cascade in-process (cascade.py with the networks under ONNX Runtime): its time, the
  networks' part, the pyramid's, and the Python part's share;
- the networks raw under ONNX Runtime (default session options) in GFLOP/s: PNet over the
  pyramid levels the cascade makes for each size, RNet on 256 24x24 crops, ONet on 64 48x48,
  ResNet50 on 8 224x224 and the YOLOv3 backbone on one 416x416; ResNet50's rate is taken as
  this CPU's practical peak;
- the peak (VmHWM) and current (VmRSS) memory of Triton, each of its backend stub processes and
  the gateway after each size and concurrency.

Prints Markdown tables for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.real_photos [--sizes 1mp,3mp,12mp] [--repeats 5] [--concurrency 1,4]
                                     [--repository PATH] [--skip-package]

Without --repository it uses ./model_repository when all its networks are converted, and
otherwise converts (random ResNet50/YOLOv3 weights, seed 0; cached) into a temporary copy.
Triton and the gateway are stopped before the in-process measurements, so they do not compete.
The gateway's Triton timeout is raised to TRITON_TIMEOUT_S so slow 12 MP requests finish; rows
with requests slower than the default timeout are named under the gateway's table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import onnxruntime as ort

from core.paths import MODEL_REPOSITORY
from core.preprocessing import RESNET50_CAFFE_MEAN_BGR, YOLOV3_INPUT_SIZE, letterbox
from gateway.settings import Settings
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.mtcnn_faces import cascade
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo
from tests.utils.services import gateway_process

NETWORKS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "resnet50", "yolov3_backbone")
MODELS = "resnet50,yolov3,mtcnn"
PEAK = "resnet50"
MB = 1 << 20
# 12 MP at concurrency 4 can outlast the gateway's default 30 s per Triton call on a small CPU;
# the benchmark waits, and the report says which rows would have timed out.
TRITON_TIMEOUT_S = 600


@dataclass(frozen=True)
class Served:
    """One size at one concurrency through the gateway: ms samples by column (`wall`, each
    stage, each model), photos per second, and the faces in the last answer."""

    samples: dict[str, list[float]]
    rate: float
    faces: int


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


# --- FLOPs ---------------------------------------------------------------------------------------


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


# --- the served models -----------------------------------------------------------------------


def prepare_repository(requested: Path | None, stack: ExitStack) -> Path:
    """--repository, ./model_repository when converted, or a converted temporary copy."""
    if requested is not None:
        return requested
    if all((MODEL_REPOSITORY / n / "1" / "model.onnx").exists() for n in NETWORKS):
        return MODEL_REPOSITORY
    target = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "model_repository"
    models = [p.name for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").exists()]
    copy_models(models, target)
    log(f"Converting the models into {target} (cached after the first time)")
    subprocess.run(
        [sys.executable, "-m", "picmetric", "convert", "all", "--weights", "random", "--seed", "0"]
        + ["--repository", str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=30).is_success:
            return
        time.sleep(0.5)
    raise RuntimeError(f"The gateway at {url} was not ready after {timeout:.0f} s")


def analyze(url: str, name: str, jpeg: bytes, threshold: float) -> dict[str, Any]:
    """One uncached analysis with all three models; its wall time is added as `wall_ms`."""
    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/v1/analyze",
        files={"file": (f"{name}.jpg", jpeg, "image/jpeg")},
        data={"models": MODELS, "threshold": f"{threshold:.5f}"},
        timeout=600,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    if body["cached"]:
        raise RuntimeError("The gateway answered from its cache; the thresholds must differ")
    body["wall_ms"] = (time.perf_counter() - started) * 1000
    return body


def at_concurrency(
    url: str, name: str, jpeg: bytes, requests: int, workers: int, first: int
) -> tuple[list[dict[str, Any]], float]:
    """`requests` analyses on `workers` threads, thresholds 0.2 + (first + i) / 1e5; the
    answers and the elapsed seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        bodies = list(
            pool.map(lambda i: analyze(url, name, jpeg, 0.2 + (first + i) / 1e5), range(requests))
        )
    return bodies, time.perf_counter() - started


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


def through_gateway(
    jpegs: dict[str, bytes], repository: Path, repeats: int, concurrency: list[int]
) -> tuple[dict[tuple[str, int], Served], dict[str, Memory]]:
    """Per (size, concurrency): what the gateway did; per step ("1mp x4"): memory by process."""
    results: dict[tuple[str, int], Served] = {}
    memories: dict[str, Memory] = {}
    ports = TritonPorts(free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory() as tmp, TritonServer(repository, ports) as server:
        env = {
            "PICMETRIC_TRITON_GRPC_URL": server.grpc_url,
            "PICMETRIC_MODEL_REPOSITORY": str(repository),
            "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp}/benchmark.db",
            "PICMETRIC_TRITON_TIMEOUT_S": str(TRITON_TIMEOUT_S),
        }
        with gateway_process(env, Path(tmp) / "gateway.log") as url:
            wait_ready(url)
            assert server.process is not None
            triton = server.process.pid
            below = {triton, *descendants(triton)}
            gateway = [p for p in descendants(os.getpid()) if p not in below]
            count = 0
            for size, jpeg in jpegs.items():
                log(f"gateway: {size}")
                analyze(url, size, jpeg, 0.1 + count / 1e5)  # warm-up: first of this size
                for workers in concurrency:
                    requests = repeats * workers
                    bodies, seconds = at_concurrency(url, size, jpeg, requests, workers, count)
                    count += requests
                    samples: dict[str, list[float]] = defaultdict(list)
                    for body in bodies:
                        samples["wall"].append(body["wall_ms"])
                        for stage, ms in body["timings_ms"].items():
                            samples[stage].append(ms)
                        for model in body["models"]:
                            samples[model["name"]].append(model["latency_ms"])
                    faces = len(bodies[-1]["results"]["mtcnn"] or [])
                    results[size, workers] = Served(samples, requests / seconds, faces)
                    step = f"{size} x{workers}"
                    memories[step] = memory([triton, *descendants(triton), *gateway])
    return results, memories


# --- in-process ------------------------------------------------------------------------------


def median_seconds(repeats: int, fn: Callable[[], object]) -> float:
    """Median wall time of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tiles(image: np.ndarray, side: int, count: int) -> np.ndarray:
    """`count` (a square) float32 [3, side, side] crops: the photo shrunk and cut in a grid."""
    n = math.isqrt(count)
    small = cv2.resize(image, (n * side, n * side), interpolation=cv2.INTER_AREA)
    grid = small.reshape(n, side, n, side, 3).transpose(0, 2, 4, 1, 3)
    return np.ascontiguousarray(grid.reshape(count, 3, side, side), np.float32)


def raw_networks(
    photos: dict[str, np.ndarray], repository: Path, repeats: int
) -> list[tuple[str, str, float, float]]:
    """(network, input, GFLOP per run, median seconds) under ONNX Runtime."""
    params = cascade().Parameters()
    first = next(iter(photos.values()))
    batches: list[tuple[str, str, list[np.ndarray]]] = []
    for size, photo in photos.items():
        height, width = photo.shape[:2]
        scales = cascade().pyramid_scales(height, width, params.min_face_size, params.scale_factor)
        levels = [cascade().level_size(height, width, s) for s in scales]
        pyramid = [level[None] for level in cascade().pyramid(photo, scales)]
        label = f"{size}: {len(levels)} levels, {levels[0][1]}x{levels[0][0]} to " + (
            f"{levels[-1][1]}x{levels[-1][0]}"
        )
        batches.append(("mtcnn_pnet", label, pyramid))
    batches += [
        ("mtcnn_rnet", "256 x 24x24", [tiles(first, 24, 256)]),
        ("mtcnn_onet", "64 x 48x48", [tiles(first, 48, 64)]),
        ("resnet50", "8 x 224x224 uint8", [np.stack([cv2.resize(first, (224, 224))] * 8)]),
        ("yolov3_backbone", "1 x 416x416 uint8", [cv2.resize(first, (416, 416))[None]]),
    ]
    rows = []
    for network, label, inputs in batches:
        log(f"onnxruntime: {network} {label}")
        path = repository / network / "1" / "model.onnx"
        session = ort.InferenceSession(str(path))
        name = session.get_inputs()[0].name
        flops = sum(conv_flops(path, x.shape) for x in inputs)

        def run(
            session: ort.InferenceSession = session,
            name: str = name,
            inputs: list[np.ndarray] = inputs,
        ) -> None:
            for x in inputs:
                session.run(None, {name: x})

        rows.append((network, label, flops / 1e9, median_seconds(repeats, run)))
    return rows


def cascade_split(
    photos: dict[str, np.ndarray], repository: Path, repeats: int
) -> dict[str, dict[str, float]]:
    """Per size, median seconds of the MTCNN cascade in-process (cascade.py with the three
    networks under ONNX Runtime in place of BLS): the whole cascade, the time inside the networks
    (pyramid levels are made in worker threads meanwhile, so part of the pyramid hides there), and
    the pyramid made alone, one level after another."""
    import asyncio

    mc = cascade()
    sessions = {
        name: ort.InferenceSession(str(repository / name / "1" / "model.onnx"))
        for name in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
    }
    in_networks = [0.0]

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        result = sessions[model].run(outputs, inputs)
        in_networks[0] += time.perf_counter() - started
        return dict(zip(outputs, result, strict=True))

    params = mc.Parameters()
    split = {}
    for size, photo in photos.items():
        log(f"cascade in-process: {size}")
        scales = mc.pyramid_scales(*photo.shape[:2], params.min_face_size, params.scale_factor)
        samples: dict[str, list[float]] = defaultdict(list)
        asyncio.run(mc.detect_faces(photo, params, infer, 1024))  # warm-up
        for _ in range(repeats):
            in_networks[0] = 0.0
            started = time.perf_counter()
            asyncio.run(mc.detect_faces(photo, params, infer, 1024))
            samples["cascade"].append(time.perf_counter() - started)
            samples["networks"].append(in_networks[0])
            started = time.perf_counter()
            mc.pyramid(photo, scales)
            samples["pyramid"].append(time.perf_counter() - started)
        split[size] = {k: statistics.median(v) for k, v in samples.items()}
    return split


def with_package(photos: dict[str, np.ndarray], repeats: int) -> dict[str, tuple[float, int]]:
    """Per size: the mtcnn package's median seconds and the faces it finds."""
    from mtcnn import MTCNN

    detector = MTCNN()
    result = {}
    for size, photo in photos.items():
        log(f"mtcnn package: {size}")
        faces = len(detector.detect_faces(photo))
        seconds = median_seconds(repeats, functools.partial(detector.detect_faces, photo))
        result[size] = (seconds, faces)
    return result


def keras_seconds(photo: np.ndarray, repeats: int) -> float:
    """The seed's per-image way for the two other models: Keras ResNet50 and the Keras YOLOv3
    of conversion/darknet.py (random weights, like the served ones here), one after the other,
    resizing included. Their cost does not depend on the photo's size beyond the resize."""
    from conversion import darknet, resnet50, yolov3

    log("keras: resnet50 and yolov3 (the seed's way)")
    resnet = resnet50.keras_model(None)
    network = darknet.parse_cfg(yolov3.cfg_path("yolov3.cfg"))
    size = YOLOV3_INPUT_SIZE
    weights = darknet.random_weights(network, 0, yolov3.calibration_image(size))
    yolo = darknet.keras_model(network, weights, size)

    def both() -> None:
        image = cv2.resize(photo, (224, 224)).astype(np.float32)[None, ..., ::-1]
        resnet(image - np.array(RESNET50_CAFFE_MEAN_BGR, np.float32), training=False)
        boxed, _ = letterbox(photo, size)
        yolo(boxed[None].astype(np.float32) / 255, training=False)

    return median_seconds(repeats, both)


# --- report ----------------------------------------------------------------------------------


def gateway_table(served: dict[tuple[str, int], Served], jpegs: dict[str, bytes]) -> str:
    stages = list(dict.fromkeys(k for r in served.values() for k in r.samples if k != "wall"))
    rows = []
    for (size, workers), result in served.items():
        wall = result.samples["wall"]
        latency = [statistics.median(wall), float(np.percentile(wall, 99)), f"{result.rate:.2f}"]
        pixels = "x".join(map(str, SIZES[size]))
        row = [size, pixels, f"{len(jpegs[size]) / MB:.2f}", workers, len(wall), *latency]
        rows.append(row + [statistics.median(result.samples[k]) for k in stages])
    headers = ["size", "pixels", "JPEG MiB", "concurrency", "requests", "median ms", "p99 ms"]
    return table([*headers, "photos/s", *stages], rows)


def package_table(
    package: dict[str, tuple[float, int]],
    served: dict[tuple[str, int], Served],
    workers: int,
    keras: float,
) -> str:
    rows = []
    for size, (seconds, faces) in package.items():
        result = served[size, workers]
        gateway = statistics.median(result.samples["wall"]) / 1000
        seed = seconds + keras
        ratios = [f"{gateway / seconds:.2f}", f"{seed:.2f}", f"{gateway / seed:.2f}"]
        rows.append([size, faces, result.faces, f"{seconds:.2f}", f"{gateway:.2f}", *ratios])
    headers = ["size", "faces (package)", "faces (gateway)", "package median s"]
    versus = ["seed's way s (Keras + package)", "gateway / seed's way"]
    return table([*headers, f"gateway x{workers} median s", "gateway / package", *versus], rows)


def cascade_table(split: dict[str, dict[str, float]]) -> str:
    rows = []
    for size, t in split.items():
        python = t["cascade"] - t["networks"]
        share = f"{python / t['cascade']:.0%}"
        ms = [t["cascade"] * 1000, t["networks"] * 1000, t["pyramid"] * 1000, python * 1000]
        rows.append([size, *ms, share])
    headers = ["size", "cascade ms", "networks ms", "pyramid ms", "Python ms (pyramid incl.)"]
    return table([*headers, "Python share"], rows)


def networks_table(networks: list[tuple[str, str, float, float]], peak: float) -> str:
    rows = [
        [n, label, f"{flops:.3f}", seconds * 1000, flops / seconds, f"{flops / seconds / peak:.2f}"]
        for n, label, flops, seconds in networks
    ]
    headers = ["network", "input", "GFLOP per run", "median ms", "GFLOP/s", "of peak"]
    return table(headers, rows)


def memory_table(memories: dict[str, Memory]) -> str:
    def pair(values: tuple[float, float] | None) -> str:
        return "gone" if values is None else f"{values[0]:.0f} / {values[1]:.0f}"

    labels = sorted(
        {label for m in memories.values() for label in m},
        key=lambda label: (label != "tritonserver", label.startswith("gateway"), label),
    )
    rows = [[label, *[pair(m.get(label)) for m in memories.values()]] for label in labels]
    return table(["process", *memories], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1mp,3mp,12mp", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--repository", type=Path)
    parser.add_argument("--skip-package", action="store_true", help="no mtcnn package runs")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := [s for s in sizes if s not in SIZES]:
        parser.error(f"unknown size(s) {unknown}; choose from {', '.join(SIZES)}")
    concurrency = sorted({int(c) for c in args.concurrency.split(",")})

    print("## Real-size photos\n")
    print(f"`{' '.join(['python', *sys.argv])}`\n")
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}\n")
    jpegs = {s: jpeg_bytes(real_photo(float(s.removesuffix("mp")))) for s in sizes}
    photos = {s: decoded(jpeg) for s, jpeg in jpegs.items()}
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        served, memories = through_gateway(jpegs, repository, args.repeats, concurrency)
        networks = raw_networks(photos, repository, args.repeats)
        split = cascade_split(photos, repository, args.repeats)
    package = {} if args.skip_package else with_package(photos, args.repeats)
    keras = 0.0 if args.skip_package else keras_seconds(photos[sizes[0]], args.repeats)

    print("### Through the gateway (all three models, upload, no cache)\n")
    print(
        "Median ms per stage (`timings_ms`) and per model (`latency_ms`: the models run at the "
        "same time, so they overlap).\n"
    )
    print(gateway_table(served, jpegs) + "\n")
    default = Settings.model_fields["triton_timeout_s"].default
    late = [f"{s} x{c}" for (s, c), r in served.items() if max(r.samples["wall"]) > default * 1000]
    if late:
        print(f"Requests over {default:.0f} s, the gateway's default Triton timeout: {late}\n")
    if package:
        print("### The mtcnn package in-process (the oracle) on the same decoded photos\n")
        print(
            f"The seed's way: the package plus Keras ResNet50 and YOLOv3 one after the other "
            f"({keras:.2f} s), as the Flask service ran them per request.\n"
        )
        print(package_table(package, served, concurrency[0], keras) + "\n")
    peak = next(flops / seconds for n, _, flops, seconds in networks if n == PEAK)
    print("### The networks raw under ONNX Runtime\n")
    print(f"{PEAK}'s {peak:.1f} GFLOP/s is taken as this CPU's practical peak.\n")
    print(networks_table(networks, peak) + "\n")
    print("### The MTCNN cascade in-process (ONNX Runtime, no Triton)\n")
    print(cascade_table(split) + "\n")
    print("### Memory per process: VmHWM / VmRSS MB after each size and concurrency\n")
    print(memory_table(memories))


if __name__ == "__main__":
    main()
