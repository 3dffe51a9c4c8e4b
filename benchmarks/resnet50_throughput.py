"""ResNet50 images/s through Triton gRPC against raw ONNX Runtime on the same model file, at
concurrency 1 and 8, measured side by side in one run (the machines are shared and noisy, so
compare the ratio, not the absolute numbers).

    python -m benchmarks.resnet50_throughput [--repository model_repository] [--requests 64]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from benchmarks._throughput import compare_with_onnxruntime, items_per_second
from core.preprocessing import resize_for_resnet50


def raw_infer(repository: Path) -> Callable[[np.ndarray], object]:
    session = ort.InferenceSession(str(repository / "resnet50" / "1" / "model.onnx"))

    def raw(image: np.ndarray) -> object:
        return session.run(["probabilities"], {"image": image[None]})

    return raw


def triton_infer(grpc_url: str) -> Callable[[np.ndarray], object]:
    client = grpcclient.InferenceServerClient(grpc_url)

    def infer(image: np.ndarray) -> object:
        inputs = [grpcclient.InferInput("image", [1, *image.shape], "UINT8")]
        inputs[0].set_data_from_numpy(image[None])
        return client.infer("resnet50", inputs).as_numpy("probabilities")

    return infer


def served(grpc_url: str, images: Sequence[np.ndarray], workers: int) -> tuple[float, list[str]]:
    return items_per_second(triton_infer(grpc_url), images, workers), []


def main() -> None:
    compare_with_onnxruntime(
        __doc__,
        requests=64,
        concurrencies=(1, 8),
        prepare=resize_for_resnet50,
        raw=raw_infer,
        served=served,
        columns=("triton-grpc img/s", "triton/onnxruntime"),
    )


if __name__ == "__main__":
    main()
