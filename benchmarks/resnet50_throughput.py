"""ResNet50 images/s through Triton gRPC against raw ONNX Runtime on the same model file, at
concurrency 1 and 8, measured side by side in one run (the machines are shared and noisy, so
compare the ratio, not the absolute numbers).

    python -m benchmarks.resnet50_throughput [--repository model_repository] [--requests 64]
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
from core.preprocessing import resize_for_resnet50
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def triton_infer(grpc_url: str) -> Callable[[np.ndarray], object]:
    client = grpcclient.InferenceServerClient(grpc_url)

    def infer(image: np.ndarray) -> object:
        inputs = [grpcclient.InferInput("image", [1, *image.shape], "UINT8")]
        inputs[0].set_data_from_numpy(image[None])
        return client.infer("resnet50", inputs).as_numpy("probabilities")

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args()
    photos = [resize_for_resnet50(p) for p in sample_photos(PHOTOS).values()]
    images = [photos[i % len(photos)] for i in range(args.requests)]
    session = ort.InferenceSession(str(args.repository / "resnet50" / "1" / "model.onnx"))

    def raw(image: np.ndarray) -> object:
        return session.run(["probabilities"], {"image": image[None]})

    ports = TritonPorts(free_port(), free_port(), free_port())
    started = time.perf_counter()
    with TritonServer(args.repository, ports) as server:
        print(f"Triton start-up: {time.perf_counter() - started:.1f} s")
        print("concurrency  onnxruntime img/s  triton-grpc img/s  triton/onnxruntime")
        for workers in (1, 8):
            direct = items_per_second(raw, images, workers)
            served = items_per_second(triton_infer(server.grpc_url), images, workers)
            print(f"{workers:>11}  {direct:>17.1f}  {served:>17.1f}  {served / direct:>18.2f}")


if __name__ == "__main__":
    main()
