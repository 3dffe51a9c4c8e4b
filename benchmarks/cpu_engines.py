"""The CPU engines side by side in one run: ONNX Runtime FP32 (today's), OpenVINO FP32 and
OpenVINO BF16 (where the CPU has it), on the same ONNX files and inputs, calls interleaved so a
busy machine slows all three alike:

- each network raw (median of --repeats): ResNet50 on 8 224x224, the YOLOv3 backbone on one
  416x416, PNet on a 12 MP photo's first pyramid level, RNet on 256 24x24 and ONet on 64 48x48
  crops, with the largest difference from ONNX Runtime's outputs;
- OpenVINO's cost of a new input shape: PNet over the 12 MP photo's pyramid levels, first call
  per level against later calls (the stand-in compiles once with dynamic shapes);
- the MTCNN cascade in-process at 1, 3 and 12 MP (pyramid in numpy, as on a CPU host) with the
  networks at each engine setting, against the mtcnn package's faces (count, worst IoU, worst
  landmark distance): `cpu-engine bf16` is what `picmetric cpu-engine openvino --precision bf16`
  writes (ONet BF16), `all BF16` every network in BF16 (what the parity rules out);
- with --gateway, the 12 MP full analysis (all three models) through the gateway and a real
  Triton, once per `picmetric cpu-engine` setting.

Prints Markdown for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.cpu_engines [--repeats 8] [--sizes 1mp,3mp,12mp] [--gateway]
                                     [--repository PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import openvino as ov

from benchmarks._measure import log, machine, table
from benchmarks._served import prepare_repository, through_gateway
from picmetric import cpu_engine
from tests.utils.mtcnn_faces import Detections, cascade, iou, oracle
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo

ENGINES = ("ORT FP32", "OpenVINO FP32", "OpenVINO BF16")
Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def cpu_flags() -> str:
    """lscpu's model name and the flags that matter here (AVX-512 family, AMX, AVX2, FMA)."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = re.search(r"Model name:\s*(.+)", text)
    flags = re.search(r"Flags:\s*(.+)", text)
    wanted = sorted(
        f
        for f in (flags.group(1).split() if flags else [])
        if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma"))
    )
    has_amx = any(f.startswith("amx") for f in wanted)
    return (
        f"{model.group(1).strip() if model else 'unknown'}; flags: {' '.join(wanted)}"
        f"{'' if has_amx else ' (no AMX)'}"
    )


def ort_run(path: Path) -> tuple[Run, list[str]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return (lambda feed: session.run(names, feed)), names


def openvino_run(core: ov.Core, path: Path, precision: str, names: list[str]) -> Run:
    hint = {"FP32": "f32", "BF16": "bf16"}[precision]
    properties = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(str(path), "CPU", properties).create_infer_request()

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = request.infer(feed)
        return [results[name] for name in names]

    return run


def engines(core: ov.Core, path: Path, bf16: bool) -> tuple[dict[str, Run], list[str]]:
    """The engines this host runs on one ONNX file, ONNX Runtime first."""
    first, names = ort_run(path)
    runs = {"ORT FP32": first, "OpenVINO FP32": openvino_run(core, path, "FP32", names)}
    if bf16:
        runs["OpenVINO BF16"] = openvino_run(core, path, "BF16", names)
    return runs, names


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each, after one warm-up call each, the calls taken in turn."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def network_inputs(photo: np.ndarray) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """network -> (what it gets, its feed), cut from the 12 MP photo."""
    mc = cascade()
    height, width = photo.shape[:2]
    params = mc.Parameters()
    first = mc.pyramid_scales(height, width, params.min_face_size, params.scale_factor)[0]
    level_h, level_w = mc.level_size(height, width, first)
    level = cv2.resize(photo, (level_w, level_h), interpolation=cv2.INTER_AREA)

    def crops(side: int, count: int) -> np.ndarray:
        n = int(np.sqrt(count))
        small = cv2.resize(photo, (n * side, n * side), interpolation=cv2.INTER_AREA)
        grid = small.reshape(n, side, n, side, 3).transpose(0, 2, 4, 1, 3)
        return np.ascontiguousarray(grid.reshape(count, 3, side, side), np.float32)

    square = cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA)
    return {
        "resnet50": ("8x224x224", {"image": np.repeat(square[None], 8, axis=0)}),
        "yolov3_backbone": (
            "1x416x416",
            {"image": cv2.resize(photo, (416, 416), interpolation=cv2.INTER_AREA)[None]},
        ),
        "mtcnn_pnet": (
            f"12 MP first level ({level_h}x{level_w})",
            {"image": level.transpose(2, 0, 1)[None].astype(np.float32)},
        ),
        "mtcnn_rnet": ("256x24x24", {"image": crops(24, 256)}),
        "mtcnn_onet": ("64x48x48", {"image": crops(48, 64)}),
    }


def raw_networks(
    core: ov.Core, repository: Path, photo: np.ndarray, repeats: int, bf16: bool
) -> list[list[object]]:
    rows: list[list[object]] = []
    for network, (shape, feed) in network_inputs(photo).items():
        log(f"raw: {network}")
        runs, _ = engines(core, repository / network / "1" / "model.onnx", bf16)
        want = runs["ORT FP32"](feed)
        differences = []
        for name in list(runs)[1:]:
            got = runs[name](feed)
            scale = max(float(np.max(np.abs(w))) for w in want)
            worst = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
            differences.append(f"{name.split()[-1]} {worst / scale:.0e}")
        ms = interleaved(
            {name: (lambda r=run, f=feed: r(f)) for name, run in runs.items()}, repeats
        )
        best = min(ms[name] for name in list(runs)[1:])
        rows.append(
            [
                f"{network}, {shape}",
                *[f"{ms[name]:.1f} ms" if name in ms else "—" for name in ENGINES],
                f"{ms['ORT FP32'] / best:.2f}x",
                ", ".join(differences),
            ]
        )
    return rows


def new_shapes(core: ov.Core, repository: Path, photo: np.ndarray) -> list[list[object]]:
    """PNet over the photo's pyramid levels: first and later call per level, summed."""
    mc = cascade()
    params = mc.Parameters()
    scales = mc.pyramid_scales(*photo.shape[:2], params.min_face_size, params.scale_factor)
    sums = mc.running_sums(photo)
    levels = [mc.area_level(photo, sums, *mc.level_size(*photo.shape[:2], s)) for s in scales]
    feeds = [{"image": level[None]} for level in levels]
    path = repository / "mtcnn_pnet" / "1" / "model.onnx"
    rows: list[list[object]] = []
    for name, run in engines(core, path, bf16=False)[0].items():
        first, later = 0.0, 0.0
        for feed in feeds:
            started = time.perf_counter()
            run(feed)
            first += time.perf_counter() - started
            times = []
            for _ in range(3):
                started = time.perf_counter()
                run(feed)
                times.append(time.perf_counter() - started)
            later += statistics.median(times)
        rows.append(
            [name, len(feeds), f"{first * 1000:.0f} ms", f"{later * 1000:.0f} ms"]
            + [f"{(first - later) * 1000 / len(feeds):.1f} ms"]
        )
    return rows


def faces_against(got: object, want: Detections) -> str:
    """'n/m faces, IoU ≥ x, landmarks ≤ y px' for the cascade's faces against the package's."""
    boxes, landmarks = got.boxes, got.landmarks  # type: ignore[attr-defined]
    if not len(boxes) or not len(want):
        return f"{len(boxes)}/{len(want)} faces"
    overlaps = iou(boxes.astype(np.float64), want.boxes)
    worst_iou, worst_px = 1.0, 0.0
    for j in range(len(want)):
        i = int(np.argmax(overlaps[:, j]))
        worst_iou = min(worst_iou, float(overlaps[i, j]))
        distance = np.linalg.norm(landmarks[i] - want.landmarks[j], axis=-1).max()
        worst_px = max(worst_px, float(distance))
    same = len(boxes) == len(want) and worst_iou > 0.95 and worst_px < 2.0
    return (
        f"{len(boxes)}/{len(want)} faces, IoU ≥ {worst_iou:.3f}, landmarks ≤ {worst_px:.1f} px"
        f" {'(equal)' if same else '(differs)'}"
    )


def cascade_settings(bf16: bool) -> dict[str, Callable[[str], str]]:
    """Setting -> network -> precision ('ORT' for ONNX Runtime)."""
    settings: dict[str, Callable[[str], str]] = {
        "ORT FP32": lambda model: "ORT",
        "OpenVINO FP32": lambda model: "FP32",
    }
    if bf16:
        settings["cpu-engine bf16"] = lambda model: cpu_engine.precision_for(model, "bf16")
        settings["all BF16"] = lambda model: "BF16"
    return settings


def mtcnn_cascade(
    core: ov.Core, repository: Path, photos: dict[str, np.ndarray], repeats: int, bf16: bool
) -> list[list[object]]:
    from mtcnn import MTCNN

    mc = cascade()
    detector = MTCNN()
    networks = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
    runners: dict[str, dict[str, Run]] = {}
    for setting, precision in cascade_settings(bf16).items():
        runners[setting] = {}
        for network in networks:
            path = repository / network / "1" / "model.onnx"
            run, names = ort_run(path)
            if precision(network) != "ORT":
                run = openvino_run(core, path, precision(network), names)
            runners[setting][network] = run

    def infer_with(setting: str) -> Callable:
        async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
            return dict(zip(outputs, runners[setting][model](inputs), strict=True))

        return infer

    rows: list[list[object]] = []
    for size, photo in photos.items():
        log(f"cascade: {size}")
        want = oracle(detector, photo)
        params = mc.Parameters()
        calls = {
            setting: (
                lambda s=setting, p=photo, q=params: asyncio.run(
                    mc.detect_faces(p, q, infer_with(s), 256)
                )
            )
            for setting in runners
        }
        ms = interleaved(calls, repeats)
        for setting, call in calls.items():
            rows.append(
                [size, setting, f"{ms[setting]:.0f} ms", faces_against(call(), want)]
                + [f"{ms['ORT FP32'] / ms[setting]:.2f}x"]
            )
    return rows


def linked_copy(repository: Path, target: Path) -> Path:
    """The repository's configs and Python files copied, its ONNX files linked."""

    def copy(source: str, destination: str) -> None:
        if source.endswith(".onnx"):
            os.symlink(os.path.abspath(source), destination)
        else:
            shutil.copy2(source, destination)

    shutil.copytree(repository, target, copy_function=copy)
    return target


def gateway_12mp(repository: Path, repeats: int, bf16: bool) -> list[list[object]]:
    jpeg = jpeg_bytes(real_photo(12))
    settings = [("ORT FP32", "onnxruntime", "fp32"), ("OpenVINO FP32", "openvino", "fp32")]
    if bf16:
        settings.append(("cpu-engine bf16", "openvino", "bf16"))
    rows: list[list[object]] = []
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine, precision in settings:
            log(f"gateway 12 MP: {name}")
            copy = linked_copy(repository, Path(tmp) / name.replace(" ", "_"))
            cpu_engine.switch(copy, engine, precision)
            results, _ = through_gateway({"12mp": jpeg}, copy, repeats, [1])
            wall = statistics.median(results["12mp", 1].samples["wall"])
            mtcnn = statistics.median(results["12mp", 1].samples["mtcnn"])
            baseline = baseline or wall
            rows.append(
                [name, f"{wall:.0f} ms", f"{mtcnn:.0f} ms", f"{baseline / wall:.2f}x"]
                + [results["12mp", 1].faces]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--sizes", default="1mp,3mp,12mp")
    parser.add_argument("--gateway", action="store_true", help="also 12 MP through the gateway")
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    core = ov.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    bf16 = "BF16" in capabilities
    photos = {s: decoded(jpeg_bytes(real_photo(mp))) for s, mp in _megapixels(args.sizes)}
    twelve = decoded(jpeg_bytes(real_photo(12)))
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        raw = raw_networks(core, repository, twelve, args.repeats, bf16)
        shapes = new_shapes(core, repository, twelve)
        faces = mtcnn_cascade(core, repository, photos, max(3, args.repeats // 2), bf16)
        served = gateway_12mp(repository, max(3, args.repeats // 2), bf16) if args.gateway else []
    command = " ".join(["python -m benchmarks.cpu_engines", *sys.argv[1:]])
    print(
        f"`{command}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine()}, "
        f"openvino {ov.get_version().split('-')[0]}; {cpu_flags()}; OpenVINO's capabilities: "
        f"{', '.join(capabilities)}. Medians of {args.repeats}, engines interleaved.\n"
    )
    print(
        table(["network, input", *ENGINES, "ORT / best OpenVINO", "max diff from ORT (rel.)"], raw)
    )
    print()
    print(
        table(
            ["PNet engine", "12 MP levels", "first calls", "later calls", "extra per new shape"],
            shapes,
        )
    )
    print()
    print(
        table(["photo", "MTCNN networks", "cascade", "faces vs the mtcnn package", "vs ORT"], faces)
    )
    if served:
        print()
        print(table(["12 MP full analysis", "wall", "mtcnn", "vs ORT", "faces"], served))


def _megapixels(sizes: str) -> list[tuple[str, float]]:
    known = {"1mp": 1.0, "3mp": 3.0, "12mp": 12.0}
    return [(s, known[s]) for s in sizes.split(",")]


if __name__ == "__main__":
    main()
