"""PNet in INT8 (issue 29, "PNet at a quarter of peak: try INT8"): ONNX Runtime's static
quantization of `mtcnn_pnet` beside its FP32 graph, on real-size photos (1, 3 and 12 MP JPEGs from
tests/utils/real_photos.py, decoded as the gateway decodes them), in one process:

- the networks converted by the project's own converter (conversion/mtcnn.py, real weights from
  the `mtcnn` wheel, into a temporary repository; nothing under model_repository/ changes);
- PNet quantized with `onnxruntime.quantization.quantize_static` (uint8 activations, int8
  weights: ORT's defaults on x86), in a few variants (VARIANTS), calibrated with MinMax on the
  pyramid bands of scikit-image's sample photos (conversion/samples.py) and of 1 and 3 MP real
  photos made with another seed than the ones compared (the faces elsewhere, other noise; the
  same source pictures); `--calibration samples` leaves the latter out. ORT's Percentile and
  Entropy calibrators fail on bands of different shapes, so MinMax only;
- PNet's time over every band of each photo's pyramid, FP32 and each INT8 variant in turn, the
  order reversed every round, medians of wall time and of the process's CPU time (steadier on a
  shared machine; with more than one thread it includes ORT's spinning workers, so compare it
  with `--threads 1`); how far PNet's outputs move (the largest change of the face probability
  and of an offset, and the cells whose call at `threshold_pnet` flips);
- the whole in-process cascade (model_repository/mtcnn/1/cascade.py, the networks under ONNX
  Runtime in place of BLS) with the INT8 PNet and FP32 RNet and ONet, its faces against the
  all-FP32 cascade's: equal to the bit or not, and faces outside the parity tolerance the
  project holds the cascade to against the `mtcnn` package (tests/utils/mtcnn_faces.py: IoU >
  0.95, score within 0.01, landmarks within 2 px); with `--package`, against the package too.
  Every QDQ variant twice: with ORT's fused integer kernels, and "simulated" (the graph
  unfused, `unfused()`), the arithmetic of an INT8 kernel without AVX2's 16-bit saturation.

Prints a Markdown table (progress to stderr).

    python -m benchmarks.pnet_int8 [--sizes 1mp,3mp,12mp] [--repeats 5] [--threads 0]
                                   [--variants qdq,qdq-tensor,...] [--calibration real]
                                   [--package]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks._measure import log, machine, table
from tests.utils.mtcnn_faces import (
    MAX_LANDMARK_PX,
    MAX_SCORE_DIFF,
    MIN_IOU,
    cascade,
    iou,
    levels_within_pnet,
    oracle,
)
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo

NETWORKS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
PNET_OUTPUTS = ["offsets", "probabilities"]
CROP_BATCH = 256  # RNet and ONet crops per request: config.pbtxt's crop_batch_size
CALIBRATION_SEED = 1  # the compared photos are real_photo()'s seed 0
# Real photos calibrated on with --calibration real (12 MP's bands would take GBs: ORT's MinMax
# calibrator keeps every intermediate tensor of every band until it is done).
CALIBRATION_MEGAPIXELS = (1, 3)


@dataclass(frozen=True)
class Variant:
    """One way to quantize PNet with `quantize_static`."""

    description: str
    quant_format: str  # "QDQ" or "QOperator"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: ORT's advice for u8s8 on hosts without VNNI
    trunk_only: bool = False  # only the trunk's convolutions; the heads and sigmoid stay FP32


VARIANTS = {
    "qdq": Variant("QDQ, per-channel, every op ORT quantizes (its defaults)", "QDQ"),
    "qdq-tensor": Variant("QDQ, per-tensor weights", "QDQ", per_channel=False),
    "qdq-7bit": Variant("QDQ, per-channel, 7-bit weights (reduce_range)", "QDQ", reduce_range=True),
    "qdq-trunk": Variant(
        "QDQ, per-channel, the trunk's convolutions only (heads, sigmoid FP32)",
        "QDQ",
        trunk_only=True,
    ),
    "qoperator": Variant("QOperator (QLinearConv), per-channel, ORT's defaults", "QOperator"),
}


def convert(folder: Path) -> dict[str, Path]:
    """PNet, RNet and ONet by the project's converter (cached), installed into `folder`."""
    from conversion import mtcnn as converter

    for network in converter.NETWORKS:
        if network.model in NETWORKS:
            converter.convert_network(network, folder)
    return {name: folder / name / "1" / "model.onnx" for name in NETWORKS}


def pnet_bands(photo: np.ndarray) -> list[np.ndarray]:
    """Every band of rows [1, 3, h, w] of the photo's pyramid, as the cascade sends PNet them."""
    pyramid, params = cascade("pyramid"), cascade("parameters").Parameters()
    height, width = photo.shape[:2]
    scales = pyramid.pyramid_scales(height, width, params.min_face_size, params.scale_factor)
    return [
        np.ascontiguousarray(level[None, :, a:b])
        for level in pyramid.pyramid(photo, scales)
        for a, b in pyramid.pnet_bands(*level.shape[1:])
    ]


def calibration_photos(kind: str) -> list[np.ndarray]:
    """The photos PNet is calibrated on: scikit-image's sample photos ("samples"), and with
    "real" also the 1 and 3 MP real photos made with another seed (CALIBRATION_SEED: the faces
    elsewhere, other noise) than the ones compared."""
    from conversion.samples import sample_photos

    photos = list(sample_photos().values())
    if kind == "real":
        photos += [
            decoded(jpeg_bytes(real_photo(megapixels, seed=CALIBRATION_SEED)))
            for megapixels in CALIBRATION_MEGAPIXELS
        ]
    return photos


def quantize(fp32: Path, variants: list[str], calibration: list[np.ndarray], into: Path) -> dict:
    """Each variant of PNet quantized into `into`, calibrated on `calibration` (PNet's inputs)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Bands(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bands = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            band = next(self.bands, None)
            return None if band is None else {"image": band}

    prepared = into / "pnet_prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))  # shape inference and ORT's graph optimisations
    model = onnx.load(str(prepared))
    for i, node in enumerate(model.graph.node):  # names, so that nodes can be excluded
        node.name = node.name or f"{node.op_type}_{i}"
    onnx.save(model, str(prepared))
    sigmoid_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    outputs = {o.name for o in model.graph.output} | sigmoid_inputs
    heads = [n.name for n in model.graph.node if n.op_type == "Conv" and n.output[0] in outputs]
    paths = {}
    for name in variants:
        variant = VARIANTS[name]
        paths[name] = into / f"pnet_{name}.onnx"
        quantize_static(
            str(prepared),
            str(paths[name]),
            Bands(),
            quant_format=getattr(QuantFormat, variant.quant_format),
            per_channel=variant.per_channel,
            reduce_range=variant.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv"] if variant.trunk_only else None,
            nodes_to_exclude=heads if variant.trunk_only else None,
        )
    return paths


def run_bands(session: ort.InferenceSession, bands: list[np.ndarray]) -> list[list[np.ndarray]]:
    return [list(session.run(PNET_OUTPUTS, {"image": band})) for band in bands]


def output_change(
    got: list[list[np.ndarray]], want: list[list[np.ndarray]], threshold: float
) -> tuple[float, float, int, int]:
    """The largest change of the face probability and of an offset, the cells whose call at
    `threshold` flips, and the cells over it in `want`."""
    dp = doff = 0.0
    flipped = over = 0
    for (offsets, probabilities), (offsets_0, probabilities_0) in zip(got, want, strict=True):
        face, face_0 = probabilities[0, 1], probabilities_0[0, 1]
        dp = max(dp, float(np.abs(face - face_0).max()))
        doff = max(doff, float(np.abs(offsets - offsets_0).max()))
        flipped += int(np.count_nonzero((face > threshold) != (face_0 > threshold)))
        over += int(np.count_nonzero(face_0 > threshold))
    return dp, doff, flipped, over


def change_cells(change: tuple[float, float, int, int]) -> list[object]:
    dp, doff, flipped, over = change
    return [f"{dp:.3f}", f"{doff:.3f}", f"{flipped} / {over}"]


def options(threads: int) -> ort.SessionOptions:
    """ORT's defaults, with `threads` intra-op threads (0: ORT's default, all cores, as served)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return options


def unfused(threads: int) -> ort.SessionOptions:
    """Session options that keep a QDQ graph as written: every Conv in FP32 between
    DequantizeLinear and QuantizeLinear, so the products of the quantized values are summed
    without overflow (to FP32 rounding), as int32 accumulators (VNNI's, ARM's) sum them. ORT's
    fused u8s8 kernels on AVX2 without VNNI add pairs of products in 16 bits first (vpmaddubsw),
    which saturate with 8-bit weights; 7-bit weights (reduce_range) stay clear of it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def faces(photo: np.ndarray, sessions: dict[str, ort.InferenceSession]) -> Any:
    """The whole cascade's faces with these networks (the pyramid in worker threads)."""
    detector = cascade("cascade")

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        result = sessions[model].run(outputs, {"image": inputs["image"]})
        return dict(zip(outputs, result, strict=True))

    params = cascade("parameters").Parameters()
    return asyncio.run(detector.detect_faces(photo, params, infer, CROP_BATCH))


@dataclass(frozen=True)
class Comparison:
    """Faces against reference faces: counts, bit-equality, and the worst matched differences."""

    count: int
    reference: int
    equal: bool
    outside: int  # reference faces with no face within the parity tolerance
    worst_iou: float
    score_diff: float
    landmark_px: float

    def cells(self) -> list[object]:
        counts = f"{self.count} / {self.reference}"
        return [counts, "yes" if self.equal else "no", self.outside, f"{self.worst_iou:.3f}"] + [
            f"{self.score_diff:.4f}",
            f"{self.landmark_px:.2f}",
        ]


def compare(got: Any, want: Any) -> Comparison:
    """Each reference face matched to its best-overlapping face (each face matched once), as
    `tests.utils.mtcnn_faces.assert_same_faces` does; unmatched ones count IoU 0."""
    arrays = [(got.boxes, want.boxes), (got.scores, want.scores), (got.landmarks, want.landmarks)]
    equal = all(a.shape == b.shape and np.array_equal(a, b) for a, b in arrays)
    n, m = len(got.scores), len(want.scores)
    overlaps = iou(np.asarray(got.boxes, np.float64), np.asarray(want.boxes, np.float64))
    outside, worst, score_diff, landmark_px = 0, 1.0, 0.0, 0.0
    for j in range(m):
        i = int(np.argmax(overlaps[:, j])) if n else -1
        if i < 0 or overlaps[i, j] <= 0:
            outside, worst = outside + 1, 0.0
            continue
        ds = abs(float(got.scores[i]) - float(want.scores[j]))
        dl = float(np.linalg.norm(got.landmarks[i] - want.landmarks[j], axis=-1).max())
        worst = min(worst, float(overlaps[i, j]))
        score_diff, landmark_px = max(score_diff, ds), max(landmark_px, dl)
        outside += not (overlaps[i, j] > MIN_IOU and ds < MAX_SCORE_DIFF and dl < MAX_LANDMARK_PX)
        overlaps[i, :] = -1
    outside += max(n - m, 0)  # extra faces count too
    return Comparison(n, m, equal, outside, worst, score_diff, landmark_px)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--calibration",
        choices=("real", "samples"),
        default="real",
        help="calibrate on the sample photos and real photos of another seed, or samples only",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="ORT intra-op threads (0: all cores, as served)"
    )
    parser.add_argument(
        "--package", action="store_true", help="also compare with the mtcnn package (slow)"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")

    folder = Path(tempfile.mkdtemp(prefix="pnet_int8_"))
    log(f"converting MTCNN's networks into {folder}")
    paths = convert(folder)
    calibration = [
        band for photo in calibration_photos(args.calibration) for band in pnet_bands(photo)
    ]
    log(f"quantizing PNet on {len(calibration)} bands ({args.calibration})")
    int8 = quantize(paths["mtcnn_pnet"], variants, calibration, folder)
    session_options = options(args.threads)
    fp32 = {name: ort.InferenceSession(str(path), session_options) for name, path in paths.items()}
    pnets = {"fp32": fp32["mtcnn_pnet"]}
    pnets |= {name: ort.InferenceSession(str(path), session_options) for name, path in int8.items()}
    simulated = {  # the QDQ graphs unfused: FP32 maths on the quantized values
        name: ort.InferenceSession(str(path), unfused(args.threads))
        for name, path in int8.items()
        if VARIANTS[name].quant_format == "QDQ"
    }
    threshold = cascade("parameters").Parameters().threshold_pnet
    detector = None
    if args.package:
        from mtcnn import MTCNN

        detector = MTCNN()

    timing_rows, accuracy_rows, package_rows = [], [], []
    for size in args.sizes.split(","):
        photo = decoded(jpeg_bytes(real_photo(int(size.removesuffix("mp")))))
        bands = pnet_bands(photo)
        log(f"{size}: {len(bands)} PNet bands, {sum(b[0, 0].size for b in bands) / 1e6:.2f} MP")
        outputs = {label: run_bands(session, bands) for label, session in pnets.items()}  # warm
        seconds: dict[str, list[float]] = {label: [] for label in pnets}
        cpu: dict[str, list[float]] = {label: [] for label in pnets}
        for repeat in range(args.repeats):
            log(f"{size}: round {repeat + 1}/{args.repeats}")
            order = list(pnets) if repeat % 2 == 0 else list(pnets)[::-1]
            for label in order:
                started, cpu_started = time.perf_counter(), time.process_time()
                run_bands(pnets[label], bands)
                seconds[label].append(time.perf_counter() - started)
                cpu[label].append(time.process_time() - cpu_started)
        log(f"{size}: the cascade")
        reference = faces(photo, fp32)
        found = {"fp32": reference}
        fp32_ms = statistics.median(seconds["fp32"]) * 1000
        fp32_cpu = statistics.median(cpu["fp32"]) * 1000
        for v in variants:
            ms = statistics.median(seconds[v]) * 1000
            cpu_ms = statistics.median(cpu[v]) * 1000
            runs = [("ORT's kernels", pnets[v], outputs[v])]
            if v in simulated:
                runs.append(("simulated", simulated[v], run_bands(simulated[v], bands)))
            for arithmetic, session, answers in runs:
                got = faces(photo, fp32 | {"mtcnn_pnet": session})
                found.setdefault(v, got)
                change = output_change(answers, outputs["fp32"], threshold)
                comparison = compare(got, reference)
                accuracy_rows.append(
                    [size, v, arithmetic, *change_cells(change), *comparison.cells()]
                )
                if arithmetic == "ORT's kernels":
                    equal = "yes" if comparison.equal else "no"
                    timing_rows.append(
                        [size, v, fp32_ms, ms, f"{ms / fp32_ms:.2f}", fp32_cpu, cpu_ms]
                        + [f"{cpu_ms / fp32_cpu:.2f}", equal, comparison.outside]
                    )
        if detector is not None:
            log(f"{size}: the mtcnn package")
            with levels_within_pnet():
                want = oracle(detector, photo)
            for label, got in found.items():
                package_rows.append([size, label, *compare(got, want).cells()])

    threads = args.threads or "ORT's default"
    print(f"{machine()}; calibrated on {args.calibration}; intra-op threads {threads}")
    print(f"{args.repeats} rounds, medians; load average {os.getloadavg()[0]:.2f} at the end\n")
    for name in variants:
        print(f"- {name}: {VARIANTS[name].description}")
    print("\nPNet over every band of the pyramid; the faces of the cascade with it:\n")
    headers = ["size", "variant", "FP32 ms", "INT8 ms", "INT8 / FP32", "FP32 CPU ms"]
    headers += ["INT8 CPU ms", "INT8 / FP32 CPU", "faces equal", "outside tolerance"]
    print(table(headers, timing_rows))
    print("\nPNet's outputs and the faces against FP32's, with ORT's kernels and simulated:\n")
    faces_headers = ["faces / FP32's", "equal", "outside tolerance", "worst IoU", "max Δscore"]
    change_headers = ["max Δp(face)", "max Δoffset", "cells flipped / over threshold"]
    headers = ["size", "variant", "arithmetic", *change_headers, *faces_headers]
    print(table([*headers, "max landmark px"], accuracy_rows))
    if package_rows:
        print("\nAgainst the mtcnn package (ORT's kernels):\n")
        headers = ["size", "PNet", "faces / package's", *faces_headers[1:], "max landmark px"]
        print(table(headers, package_rows))


if __name__ == "__main__":
    main()
