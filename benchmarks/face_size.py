"""The `min_face_size` option's cost at one photo size (12 MP by default): for each face size, in
one run on the same photo, interleaved round by round so that a noisy host slows every value alike:

- through the gateway (`POST /v1/analyze`, multipart upload, `Cache-Control: no-cache` so the
  store never answers, one request at a time): MTCNN alone (`models=mtcnn`: the answer's wall time
  and the model's `latency_ms`) and the whole analysis (all three models: wall time);
- the mtcnn package in-process on the same decoded photo with the same `min_face_size` (levels
  under PNet's 12-px window dropped, as the cascade does: tests/utils/mtcnn_faces.py), and the
  faces each finds.

Prints a Markdown table for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.face_size [--size 12mp] [--face-sizes 20px,1%,2%] [--repeats 5]
                                   [--repository PATH] [--skip-package]

Without --repository it uses ./model_repository when all its networks are converted, and
otherwise converts (random ResNet50/YOLOv3 weights, seed 0; cached) into a temporary copy.
Triton and the gateway are stopped before the package runs, so they do not compete.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._measure import log, machine, table
from benchmarks._served import MODELS, TRITON_TIMEOUT_S, prepare_repository, served
from gateway.results import face_pixels, face_size
from tests.utils.mtcnn_faces import levels_within_pnet
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo


def analyze(url: str, jpeg: bytes, models: str, size: str) -> dict[str, Any]:
    """One analysis run afresh; its wall time added as `wall_ms`."""
    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"models": models, "min_face_size": size},
        headers={"Cache-Control": "no-cache"},
        timeout=TRITON_TIMEOUT_S,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    body["wall_ms"] = (time.perf_counter() - started) * 1000
    return body


def through_gateway(
    jpeg: bytes, repository: Path, face_sizes: list[str], repeats: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    """Per face size: ms samples (`mtcnn wall`, `mtcnn latency`, `analysis wall`), and the faces
    the gateway found."""
    samples: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in face_sizes}
    faces: dict[str, int] = {}
    with served(repository) as (_, url):
        for size in face_sizes:  # warm-up: each size's first request
            analyze(url, jpeg, MODELS, size)
        for round_ in range(repeats):
            log(f"gateway: round {round_ + 1}/{repeats}")
            for size in face_sizes:
                alone = analyze(url, jpeg, "mtcnn", size)
                samples[size]["mtcnn wall"].append(alone["wall_ms"])
                (run,) = alone["models"]
                samples[size]["mtcnn latency"].append(run["latency_ms"])
                faces[size] = len(alone["results"]["mtcnn"])
                whole = analyze(url, jpeg, MODELS, size)
                samples[size]["analysis wall"].append(whole["wall_ms"])
    return samples, faces


def with_package(
    photo: np.ndarray, face_sizes: list[str], repeats: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per face size: the package's ms samples (interleaved rounds) and the faces it finds."""
    from mtcnn import MTCNN

    detector = MTCNN()
    height, width = photo.shape[:2]
    pixels = {size: face_pixels(size, height, width) for size in face_sizes}
    samples: dict[str, list[float]] = defaultdict(list)
    faces = {}
    with levels_within_pnet():
        for size in face_sizes:  # warm-up, and the faces
            faces[size] = len(detector.detect_faces(photo, min_face_size=pixels[size]))
        for round_ in range(repeats):
            log(f"mtcnn package: round {round_ + 1}/{repeats}")
            for size in face_sizes:
                started = time.perf_counter()
                detector.detect_faces(photo, min_face_size=pixels[size])
                samples[size].append((time.perf_counter() - started) * 1000)
    return samples, faces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="12mp", help=f"one of {', '.join(SIZES)}")
    parser.add_argument("--face-sizes", default="20px,1%,2%", help="min_face_size values")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repository", type=Path)
    parser.add_argument("--skip-package", action="store_true", help="no mtcnn package runs")
    args = parser.parse_args()
    if args.size not in SIZES:
        parser.error(f"unknown size {args.size}; choose from {', '.join(SIZES)}")
    try:
        face_sizes = [face_size(s) for s in args.face_sizes.split(",") if s.strip()]
    except ValueError as exc:
        parser.error(f"--face-sizes: {exc}")

    jpeg = jpeg_bytes(real_photo(float(args.size.removesuffix("mp"))))
    photo = decoded(jpeg)
    height, width = photo.shape[:2]
    print(f"## min_face_size at {args.size} ({width}x{height})\n")
    print(f"`{' '.join(['python -m benchmarks.face_size', *sys.argv[1:]])}`\n")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}\n")
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        served, found = through_gateway(jpeg, repository, face_sizes, args.repeats)
    package: dict[str, list[float]] = {}
    package_faces: dict[str, int] = {}
    if not args.skip_package:
        package, package_faces = with_package(photo, face_sizes, args.repeats)

    def median(values: list[float]) -> float | str:
        return statistics.median(values) if values else "-"

    baseline = statistics.median(served[face_sizes[0]]["mtcnn latency"])
    rows = []
    for size in face_sizes:
        ms = served[size]
        latency = statistics.median(ms["mtcnn latency"])
        rows.append(
            [
                size,
                f"{face_pixels(size, height, width):g}",
                median(ms["mtcnn latency"]),
                f"{latency / baseline:.2f}",
                median(ms["mtcnn wall"]),
                median(ms["analysis wall"]),
                median(package.get(size, [])),
                found[size],
                package_faces.get(size, "-"),
            ]
        )
    headers = [
        "min_face_size",
        "px",
        "mtcnn latency ms",
        f"vs {face_sizes[0]}",
        "mtcnn alone: wall ms",
        "all three models: wall ms",
        "package ms",
        "faces",
        "package faces",
    ]
    print(f"Medians of {args.repeats} interleaved rounds, one request at a time.\n")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
