"""Threads and instances for the models on a small CPU (issue 29, "two cores, many models"): the
committed repository beside variants of it that change only ONNX Runtime's intra-op threads
(`intra_op_thread_count`, read by the native onnxruntime backend and by our stand-in alike) or
instance counts, each served by its own local Triton and gateway, one after the other, the order
reversed every round so that a drift in the machine's load falls on every variant alike.

Per variant, size and concurrency: photos per second, the median analysis, and the CPU seconds a
photo costs in Triton, its stubs and the gateway (/proc; other load slows a photo but does not
add to this, so it is the steadier figure on a shared machine). Faces are checked equal to the
committed repository's: a variant changes how the networks run, not what they answer.

Prints Markdown for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.triton_threads [--variants committed,mtcnn-1,onnx-1] [--sizes 1mp,12mp]
        [--concurrency 1,4] [--rounds 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._measure import cpu_seconds, descendants, log, machine, table
from benchmarks._served import NETWORKS, analyze, at_concurrency, prepare_repository, served
from core.model_config import read_config, write_config
from core.paths import MODEL_REPOSITORY
from picmetric.repository import copy_models
from tests.utils.real_photos import jpeg_bytes, real_photo

MTCNN_NETWORKS = tuple(n for n in NETWORKS if n.startswith("mtcnn_"))


@dataclass(frozen=True)
class Variant:
    """Changes to the committed configs: intra-op threads and instance counts by model."""

    description: str
    threads: Mapping[str, int] = field(default_factory=dict)
    instances: Mapping[str, int] = field(default_factory=dict)


VARIANTS = {
    "committed": Variant("the committed configs"),
    "mtcnn-1": Variant("MTCNN's networks on 1 thread", dict.fromkeys(MTCNN_NETWORKS, 1)),
    "mtcnn-1-pnet-2": Variant(
        "MTCNN's networks on 1 thread, 2 PNet instances",
        dict.fromkeys(MTCNN_NETWORKS, 1),
        {"mtcnn_pnet": 2},
    ),
    "onnx-1": Variant("every network on 1 thread", dict.fromkeys(NETWORKS, 1)),
    "onnx-1-yolo-2": Variant(
        "every network on 1 thread, 2 YOLOv3 instances",
        dict.fromkeys(NETWORKS, 1),
        {"yolov3_backbone": 2},
    ),
}


def variant_repository(converted: Path, variant: Variant, target: Path) -> Path:
    """The committed repository in `target` with `converted`'s networks and `variant`'s changes."""
    models = [p.name for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").exists()]
    copy_models(models, target)
    for network in NETWORKS:
        (target / network / "1").mkdir(parents=True, exist_ok=True)
        source, copy = (
            converted / network / "1" / "model.onnx",
            target / network / "1" / "model.onnx",
        )
        try:
            os.link(source, copy)
        except OSError:  # another filesystem
            shutil.copyfile(source, copy)
    for model, threads in variant.threads.items():
        config = read_config(target / model)
        config.parameters["intra_op_thread_count"].string_value = str(threads)
        write_config(target / model, config)
    for model, count in variant.instances.items():
        config = read_config(target / model)
        config.instance_group[0].count = count
        write_config(target / model, config)
    return target


@dataclass
class Samples:
    rates: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    faces: set[str] = field(default_factory=set)


def measure(
    repository: Path, jpegs: dict[str, bytes], concurrency: list[int], repeats: int, first: int
) -> dict[tuple[str, int], tuple[float, list[float], float, str]]:
    """Per (size, concurrency): photos/s, the analyses' ms, CPU s a photo, the faces as text."""
    out: dict[tuple[str, int], tuple[float, list[float], float, str]] = {}
    with served(repository) as (_server, url):
        for size, jpeg in jpegs.items():
            analyze(url, size, jpeg, 0.1 + first / 1e5)  # warm-up: first of this size
            first += 1
            for workers in concurrency:
                pids = descendants(os.getpid())
                before = cpu_seconds(pids)
                bodies, seconds = at_concurrency(url, size, jpeg, repeats * workers, workers, first)
                spent = cpu_seconds(pids) - before
                first += repeats * workers
                faces = repr([f["box"] for f in bodies[-1]["results"]["mtcnn"] or []])
                out[size, workers] = (
                    len(bodies) / seconds,
                    [b["wall_ms"] for b in bodies],
                    spent / len(bodies),
                    faces,
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--sizes", default="1mp,12mp")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="requests per worker per round")
    parser.add_argument("--repository", type=Path, help="converted models (default: convert)")
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    concurrency = sorted({int(c) for c in args.concurrency.split(",")})
    jpegs = {s: jpeg_bytes(real_photo(float(s.removesuffix("mp")))) for s in sizes}

    samples: dict[tuple[str, str, int], Samples] = defaultdict(Samples)
    loads: list[float] = []
    with ExitStack() as stack:
        converted = prepare_repository(args.repository, stack)
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        first = 0
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                log(f"round {round_ + 1} of {args.rounds}: {name} ({VARIANTS[name].description})")
                target = root / name
                shutil.rmtree(target, ignore_errors=True)
                repository = variant_repository(converted, VARIANTS[name], target)
                loads.append(os.getloadavg()[0])
                results = measure(repository, jpegs, concurrency, args.repeats, first)
                first += 1000
                for (size, workers), (rate, walls, cpu, faces) in results.items():
                    sample = samples[name, size, workers]
                    sample.rates.append(rate)
                    sample.walls.extend(walls)
                    sample.cpu.append(cpu)
                    sample.faces.add(faces)

    print("## Threads and instances on this CPU\n")
    print(f"`{' '.join(['python -m benchmarks.triton_threads', *sys.argv[1:]])}`\n")
    started = f"{min(loads):.1f} to {max(loads):.1f}"
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}; load average {started}\n")
    print(table(["variant", "what it changes"], [[n, VARIANTS[n].description] for n in names]))
    print()
    rows: list[list[Any]] = []
    for size in sizes:
        for workers in concurrency:
            base = samples[names[0], size, workers]
            for name in names:
                s = samples[name, size, workers]
                rate = statistics.median(s.rates)
                cpu = statistics.median(s.cpu)
                rows.append(
                    [
                        size,
                        workers,
                        name,
                        f"{rate:.3f}",
                        f"{rate / statistics.median(base.rates):.2f}",
                        f"{statistics.median(s.walls):.0f}",
                        f"{cpu:.2f}",
                        f"{cpu / statistics.median(base.cpu):.2f}",
                        "yes" if s.faces == base.faces and len(s.faces) == 1 else "NO",
                    ]
                )
    headers = ["size", "concurrency", "variant", "photos/s", "x first", "median ms"]
    headers += ["CPU s a photo", "x first", f"faces as {names[0]}"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
