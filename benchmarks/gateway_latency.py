"""End-to-end latency of one analysis through the gateway (all three models) and its split by
stage, next to the same three models run in-process (ONNX Runtime for ResNet50 and the YOLOv3
backbone, the mtcnn package for faces) on the same photos in the same run.

    python -m benchmarks.gateway_latency [--repository model_repository] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort

from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from core.preprocessing import letterbox, resize_for_resnet50
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def in_process(photos: dict[str, np.ndarray], repository: Path) -> float:
    """Mean seconds per photo for the three models without Triton or HTTP."""
    from mtcnn import MTCNN

    resnet = ort.InferenceSession(str(repository / "resnet50/1/model.onnx"))
    yolo = ort.InferenceSession(str(repository / "yolov3_backbone/1/model.onnx"))
    faces = MTCNN()
    faces.detect_faces(photos["astronaut"])  # warm-up
    started = time.perf_counter()
    for rgb in photos.values():
        resnet.run(None, {"image": resize_for_resnet50(rgb)[None]})
        yolo.run(None, {"image": letterbox(rgb)[0][None]})
        faces.detect_faces(rgb)
    return (time.perf_counter() - started) / len(photos)


def through_gateway(url: str, photos: dict[str, np.ndarray], rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = defaultdict(list)
    encoded = {
        n: cv2.imencode(".png", cv2.cvtColor(p, cv2.COLOR_RGB2BGR))[1].tobytes()
        for n, p in photos.items()
    }
    for round_ in range(rounds + 1):
        for name, data in encoded.items():
            fields = {"threshold": str(0.3 + round_ / 1000)}  # a new threshold: no cache hit
            started = time.perf_counter()
            answer = httpx.post(
                f"{url}/v1/analyze", files={"file": (f"{name}.png", data)}, data=fields, timeout=300
            )
            answer.raise_for_status()
            if round_ == 0:
                continue  # warm-up
            samples["wall"].append((time.perf_counter() - started) * 1000)
            body = answer.json()
            for stage, ms in body["timings_ms"].items():
                samples[stage].append(ms)
            for model in body["models"]:
                samples[f"inference {model['name']}"].append(model["latency_ms"])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    photos = sample_photos(PHOTOS)
    ports = TritonPorts(free_port(), free_port(), free_port())
    port = free_port()
    env = {
        **os.environ,
        "PICMETRIC_TRITON_GRPC_URL": f"127.0.0.1:{ports.grpc}",
        "PICMETRIC_MODEL_REPOSITORY": str(args.repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/benchmark.db",
    }
    with TritonServer(args.repository, ports):
        gateway = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "gateway", "--port", str(port)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    if httpx.get(f"{url}/readyz", timeout=30).is_success:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            samples = through_gateway(url, photos, args.rounds)
        finally:
            gateway.terminate()
            gateway.wait()
    direct = in_process(photos, args.repository) * 1000
    print(f"{len(samples['wall'])} analyses of {len(photos)} photos, all three models")
    print(f"{'stage':<22}{'mean ms':>10}{'median ms':>11}")
    for stage, values in samples.items():
        print(f"{stage:<22}{statistics.mean(values):>10.1f}{statistics.median(values):>11.1f}")
    wall = statistics.mean(samples["wall"])
    print(f"in-process (ORT + mtcnn package), same photos: {direct:.1f} ms per photo")
    print(f"gateway / in-process: {wall / direct:.2f}")


if __name__ == "__main__":
    main()
