"""YOLOv3 images/s through the `yolov3` ensemble (Triton gRPC: backbone + NMS postprocess)
against raw ONNX Runtime on the same backbone file (candidates only, no NMS), at concurrency 1
and 4, measured side by side in one run, and the share of Triton's compute time spent in
`yolov3_postprocess` (from Triton's statistics). The machines are shared and noisy: compare the
ratios, not the absolute numbers.

    picmetric convert yolov3 --repository DIR ...   # first, unless DIR has it already
    python -m benchmarks.yolov3_throughput [--repository model_repository] [--requests 32]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from benchmarks._throughput import compare_with_onnxruntime, items_per_second
from core.preprocessing import Letterbox, letterbox
from tests.utils.yolov3 import ensemble_inputs

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


def raw_infer(repository: Path) -> Callable[[tuple[np.ndarray, Letterbox]], object]:
    session = ort.InferenceSession(
        str(repository / "yolov3_backbone" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )

    def raw(item: tuple[np.ndarray, Letterbox]) -> object:
        return session.run(["boxes", "scores"], {"image": item[0][None]})

    return raw


def served(
    grpc_url: str, images: Sequence[tuple[np.ndarray, Letterbox]], workers: int
) -> tuple[float, list[str]]:
    """Images/s through the ensemble, and the postprocess's share of the steps' compute time."""
    before = compute_ns(grpc_url)
    rate = items_per_second(triton_infer(grpc_url), images, workers)
    after = compute_ns(grpc_url)
    spent = {model: after[model] - before[model] for model in STEPS}
    share = spent["yolov3_postprocess"] / max(1, sum(spent.values()))
    return rate, [f"{share:.1%}"]


def main() -> None:
    compare_with_onnxruntime(
        __doc__,
        requests=32,
        concurrencies=(1, 4),
        prepare=letterbox,
        raw=raw_infer,
        served=served,
        columns=("yolov3 ensemble img/s", "ensemble/onnxruntime", "postprocess share"),
    )


if __name__ == "__main__":
    main()
