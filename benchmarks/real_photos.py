"""Real-size phone photos (1, 3 and 12 MP JPEGs from tests/utils/real_photos.py), in one run on
the same photos:

- through the gateway (`POST /v1/analyze`, multipart upload, all three models, a new threshold
  per request so the result cache never answers) at each concurrency: median and p99 latency,
  photos/s, and the split by stage (`timings_ms`) and by model (`models[].latency_ms`; the three
  models run at the same time, so those overlap);
- the mtcnn package (`MTCNN().detect_faces()`, the oracle) in-process on the same decoded photo,
  against the gateway with all three models at the lowest concurrency;
- the MTCNN cascade in-process (cascade.py with the networks under ONNX Runtime), with the pyramid
  made in numpy (this CPU's default) and in mtcnn_pyramid_pnet's graph (a GPU host's): its time,
  the ONNX graphs' part, the numpy pyramid's, and the Python part's share;
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
import statistics
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from benchmarks._measure import (
    Memory,
    conv_flops,
    log,
    machine,
    median_seconds,
    table,
)
from benchmarks._served import Served, prepare_repository, through_gateway
from core.preprocessing import RESNET50_CAFFE_MEAN_BGR, YOLOV3_INPUT_SIZE, letterbox
from gateway.settings import Settings
from tests.utils.mtcnn_faces import cascade
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo

PEAK = "resnet50"
MB = 1 << 20


# --- in-process ------------------------------------------------------------------------------


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
    mtcnn_pyramid = cascade("pyramid")
    params = cascade("parameters").Parameters()
    first = next(iter(photos.values()))
    batches: list[tuple[str, str, list[np.ndarray]]] = []
    for size, photo in photos.items():
        height, width = photo.shape[:2]
        scales = mtcnn_pyramid.pyramid_scales(
            height, width, params.min_face_size, params.scale_factor
        )
        levels = [mtcnn_pyramid.level_size(height, width, s) for s in scales]
        pyramid = [level[None] for level in mtcnn_pyramid.pyramid(photo, scales)]
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
) -> dict[tuple[str, str], dict[str, float]]:
    """Per size and pyramid ("numpy": made in cascade.py; "graph": in mtcnn_pyramid_pnet, as on a
    GPU host), median seconds of the MTCNN cascade in-process (cascade.py with the networks under
    ONNX Runtime in place of BLS): the whole cascade, the time inside the ONNX graphs (with the
    numpy pyramid, levels are made in worker threads meanwhile, so part of it hides there), and
    the numpy pyramid made alone, one level after another."""
    import asyncio

    mtcnn_cascade, mtcnn_pyramid = cascade("cascade"), cascade("pyramid")
    models = ("mtcnn_pnet", "mtcnn_pyramid_pnet", "mtcnn_rnet", "mtcnn_onet")
    sessions = {
        name: ort.InferenceSession(str(repository / name / "1" / "model.onnx")) for name in models
    }
    in_networks = [0.0]

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        result = sessions[model].run(outputs, inputs)
        in_networks[0] += time.perf_counter() - started
        return dict(zip(outputs, result, strict=True))

    params = cascade("parameters").Parameters()
    split = {}
    for size, photo in photos.items():
        scales = mtcnn_pyramid.pyramid_scales(
            *photo.shape[:2], params.min_face_size, params.scale_factor
        )
        for pyramid in ("numpy", "graph"):
            log(f"cascade in-process: {size}, pyramid made in {pyramid}")
            in_graph = pyramid == "graph"
            samples: dict[str, list[float]] = defaultdict(list)
            asyncio.run(mtcnn_cascade.detect_faces(photo, params, infer, 1024, in_graph))  # warm-up
            for _ in range(repeats):
                in_networks[0] = 0.0
                started = time.perf_counter()
                asyncio.run(mtcnn_cascade.detect_faces(photo, params, infer, 1024, in_graph))
                samples["cascade"].append(time.perf_counter() - started)
                samples["networks"].append(in_networks[0])
                if not in_graph:
                    started = time.perf_counter()
                    mtcnn_pyramid.pyramid(photo, scales)
                    samples["pyramid"].append(time.perf_counter() - started)
            split[size, pyramid] = {k: statistics.median(v) for k, v in samples.items()}
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


def cascade_table(split: dict[tuple[str, str], dict[str, float]]) -> str:
    rows = []
    for (size, pyramid), t in split.items():
        python = t["cascade"] - t["networks"]
        alone = f"{t['pyramid'] * 1000:.1f}" if "pyramid" in t else "-"
        ms = [t["cascade"] * 1000, t["networks"] * 1000, alone, python * 1000]
        rows.append([size, pyramid, *ms, f"{python / t['cascade']:.0%}"])
    headers = ["size", "pyramid made in", "cascade ms", "ONNX graphs ms", "numpy pyramid alone ms"]
    return table([*headers, "Python ms", "Python share"], rows)


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
    print(f"`{' '.join(['python -m benchmarks.real_photos', *sys.argv[1:]])}`\n")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}\n")
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
