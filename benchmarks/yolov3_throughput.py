"""YOLOv3 images/s through the `yolov3` ensemble (Triton gRPC: backbone + NMS postprocess)
against raw ONNX Runtime on the same backbone file (candidates only, no NMS), at concurrency 1
and 4, measured side by side in one run, and the share of Triton's compute time spent in
`yolov3_postprocess` (from Triton's statistics). The machines are shared and noisy: compare the
ratios, not the absolute numbers.

    picmetric convert yolov3 --repository DIR ...   # first, unless DIR has it already
    python -m benchmarks.yolov3_throughput [--repository model_repository] [--requests 32]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from benchmarks._throughput import items_per_second
from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from core.preprocessing import Letterbox, letterbox
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.yolov3 import ensemble_inputs

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
STEPS = ("yolov3_backbone", "yolov3_postprocess")


def triton_infer(grpc_url: str) -> Callable[[tuple[np.ndarray, Letterbox]], object]:
    client = grpcclient.InferenceServerClient(grpc_url)

    def infer(item: tuple[np.ndarray, Letterbox]) -> object:
        return client.infer("yolov3", ensemble_inputs(*item)).as_numpy("boxes")

    return infer


def compute_ns(grpc_url: str) -> dict[str, int]:
    """Cumulative compute time (input + infer + output) per step model, nanoseconds."""
    with grpcclient.InferenceServerClient(grpc_url) as client:
        totals = {}
        for model in STEPS:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
            parts = stats["inference_stats"]
            phases = ("compute_input", "compute_infer", "compute_output")
            totals[model] = sum(int(parts[k].get("ns", 0)) for k in phases)
        return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args()
    photos = [letterbox(p) for p in sample_photos(PHOTOS).values()]
    images = [photos[i % len(photos)] for i in range(args.requests)]
    session = ort.InferenceSession(
        str(args.repository / "yolov3_backbone" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )

    def raw(item: tuple[np.ndarray, Letterbox]) -> object:
        return session.run(["boxes", "scores"], {"image": item[0][None]})

    ports = TritonPorts(free_port(), free_port(), free_port())
    started = time.perf_counter()
    with TritonServer(args.repository, ports) as server:
        print(f"Triton start-up: {time.perf_counter() - started:.1f} s")
        print(
            "concurrency  onnxruntime img/s  yolov3 ensemble img/s  ensemble/onnxruntime"
            "  postprocess share"
        )
        for workers in (1, 4):
            direct = items_per_second(raw, images, workers)
            before = compute_ns(server.grpc_url)
            served = items_per_second(triton_infer(server.grpc_url), images, workers)
            after = compute_ns(server.grpc_url)
            spent = {model: after[model] - before[model] for model in STEPS}
            share = spent["yolov3_postprocess"] / max(1, sum(spent.values()))
            print(
                f"{workers:>11}  {direct:>17.2f}  {served:>21.2f}  {served / direct:>20.2f}"
                f"  {share:>17.1%}"
            )


if __name__ == "__main__":
    main()
