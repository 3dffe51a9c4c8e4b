"""MTCNN per-image latency: the cascade through Triton (the `mtcnn` BLS model, gRPC, one request
at a time) against the mtcnn package in-process (`MTCNN().detect_faces()`) on the same photos,
and how much of Triton's time is PNet, from Triton's own statistics.

    python -m benchmarks.mtcnn_latency [--repeats 5] [--large]

Starts its own Triton on free ports with only the four MTCNN models (converted into a temporary
repository, cached). Latencies are medians; the machine is shared, so compare the ratios.
"PNet" is mtcnn_pnet's compute time (input + inference + output, summed over the pyramid's
requests; one instance, so they do not overlap) as a share of the mtcnn request time; "RNet+ONet"
likewise; the rest is the Python model: pyramid resampling, crops, NMS and BLS overhead.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tritonclient.grpc as grpcclient

from conversion import mtcnn as converter
from picmetric.repository import copy_models, load_model_module
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

MODELS = ("mtcnn", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
PHOTOS = ("astronaut", "camera", "coffee", "hubble_deep_field")


def load_images(large: bool) -> dict[str, np.ndarray]:
    from skimage import data

    from tests.utils.mtcnn_faces import collage, rgb

    images = {name: rgb(getattr(data, name)()) for name in PHOTOS}
    images["collage"] = collage()
    if large:
        images["astronaut 4000x3000"] = cv2.resize(images["astronaut"], (4000, 3000))
    return images


def prepare_repository(target: Path) -> Path:
    copy_models(MODELS, target)
    converter.convert(target)
    return target


def median_ms(repeats: int, *fns: Callable[[], Any]) -> list[float]:
    """Median wall time of each function, run in turns (so load from other processes on a
    shared machine hits them alike), after one warm-up call each."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) * 1000 for spent in times]


def stats(client: grpcclient.InferenceServerClient) -> dict[str, dict[str, int]]:
    """Per model: request count and summed ns of the whole request and of compute."""
    result = {}
    for model in MODELS:
        s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        inference = s["inference_stats"]

        def ns(key: str, stats: dict = inference) -> int:
            return int(stats.get(key, {}).get("ns", 0))

        result[model] = {
            "count": int(inference["success"].get("count", 0)),
            "request_ns": ns("success"),
            "compute_ns": ns("compute_input") + ns("compute_infer") + ns("compute_output"),
        }
    return result


def triton_infer(client: grpcclient.InferenceServerClient, image: np.ndarray) -> int:
    inputs = [grpcclient.InferInput("image", list(image.shape), "UINT8")]
    inputs[0].set_data_from_numpy(image)
    return len(client.infer("mtcnn", inputs).as_numpy("scores"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="also a 4000x3000 image")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from mtcnn import MTCNN

    images = load_images(args.large)
    detector = MTCNN()
    cascade = load_model_module("mtcnn", "cascade")
    params = cascade.Parameters()

    with tempfile.TemporaryDirectory() as tmp:
        repository = prepare_repository(Path(tmp))
        ports = TritonPorts(free_port(), free_port(), free_port())
        with (
            TritonServer(repository, ports) as server,
            grpcclient.InferenceServerClient(server.grpc_url) as client,
        ):
            print(
                f"{'image':<22}{'size':>11}{'faces':>6}{'levels':>7}{'package ms':>12}"
                f"{'triton ms':>11}{'ratio':>7}{'PNet':>7}{'RNet+ONet':>10}{'resample ms':>13}"
            )
            for name, image in images.items():
                height, width = image.shape[:2]
                scales = cascade.pyramid_scales(
                    height, width, params.min_face_size, params.scale_factor
                )
                faces = triton_infer(client, image)
                before = stats(client)
                package, triton = median_ms(
                    args.repeats,
                    functools.partial(detector.detect_faces, image),
                    functools.partial(triton_infer, client, image),
                )
                after = stats(client)
                delta = {m: {k: after[m][k] - before[m][k] for k in after[m]} for m in MODELS}
                total = delta["mtcnn"]["request_ns"]
                pnet = delta["mtcnn_pnet"]["compute_ns"] / total
                later = delta["mtcnn_rnet"]["compute_ns"] + delta["mtcnn_onet"]["compute_ns"]
                pixels = image.astype(np.float32)
                (resample,) = median_ms(
                    args.repeats, functools.partial(cascade.pyramid, pixels, scales)
                )
                print(
                    f"{name:<22}{f'{width}x{height}':>11}{faces:>6}{len(scales):>7}"
                    f"{package:>12.1f}{triton:>11.1f}{triton / package:>7.2f}{pnet:>7.0%}"
                    f"{later / total:>10.0%}{resample:>13.1f}"
                )


if __name__ == "__main__":
    main()
