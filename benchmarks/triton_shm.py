"""Where the transfer of a full-resolution photo to Triton's `mtcnn` goes (issue 29, "the
transfer"): the same real-size RGB photo (tests/utils/real_photos.py) sent to a local Triton's
`mtcnn` the gateway's way (gRPC, the pixels in the request as a UINT8 tensor) and through Triton's
system shared memory (the pixels copied into a registered region, the request naming it),
interleaved call by call; and the same cascade in-process (cascade.py with the networks under ONNX
Runtime, no Triton) after Triton is stopped. Also the gateway's own client-side work for the gRPC
call (the InferInput's bytes, the request message serialized), which runs on its event loop.

Prints a Markdown table for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.triton_shm [--sizes 1mp,3mp,12mp] [--repeats 7] [--repository PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc._utils import _get_inference_request

from benchmarks._measure import log, machine, table
from benchmarks._served import prepare_repository
from core.triton_admin import grpc_admin_headers
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.mtcnn_faces import cascade
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo

MODEL = "mtcnn"


def _input(array: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("image", list(array.shape), "UINT8")
    tensor.set_data_from_numpy(array)
    return tensor


async def served(
    photos: dict[str, np.ndarray], server: TritonServer, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per size, seconds by way: `grpc` and `shm` calls interleaved (the order alternating),
    and the client-side preparation alone (`prepare`: InferInput + message + serialized)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    admin = grpc_admin_headers(server.admin_key)
    largest = max(p.nbytes for p in photos.values())
    key = f"/picmetric-bench-{os.getpid()}"
    region = shm.create_shared_memory_region("bench", key, largest)
    await client.register_system_shared_memory("bench", key, largest, headers=admin)
    view = np.frombuffer(region._mpsm_handle.buf, np.uint8, largest)
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    async def by_grpc(photo: np.ndarray) -> np.ndarray:
        result = await client.infer(MODEL, [_input(photo)])
        return np.asarray(result.as_numpy("boxes"))

    async def by_shm(photo: np.ndarray) -> np.ndarray:
        view[: photo.nbytes] = photo.reshape(-1)
        tensor = grpcclient.InferInput("image", list(photo.shape), "UINT8")
        tensor.set_shared_memory("bench", photo.nbytes)
        result = await client.infer(MODEL, [tensor])
        return np.asarray(result.as_numpy("boxes"))

    ways = {"grpc": by_grpc, "shm": by_shm}
    try:
        for size, photo in photos.items():
            log(f"served: {size}")
            answers = {way: await call(photo) for way, call in ways.items()}  # warm-up
            if not np.array_equal(answers["grpc"], answers["shm"]):
                raise RuntimeError(f"{size}: the shm call's faces differ from the gRPC call's")
            for i in range(repeats):
                for way in ways if i % 2 == 0 else reversed(ways):
                    started = time.perf_counter()
                    await ways[way](photo)
                    samples[size][way].append(time.perf_counter() - started)
                started = time.perf_counter()
                request = _get_inference_request(
                    MODEL, [_input(photo)], "", "", None, 0, False, False, 0, None, None
                )
                request.SerializeToString()
                samples[size]["prepare"].append(time.perf_counter() - started)
    finally:
        await client.unregister_system_shared_memory("bench", headers=admin)
        del view  # the region's buffer cannot close while a view of it exists
        shm.destroy_shared_memory_region(region)
        await client.close()
    return samples


def in_process(photos: dict[str, np.ndarray], repository: Path, repeats: int) -> dict[str, float]:
    """Median seconds of the cascade in-process, networks under ONNX Runtime, as
    benchmarks.real_photos measures it (numpy pyramid)."""
    mtcnn_cascade = cascade("cascade")
    models = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
    sessions = {m: ort.InferenceSession(str(repository / m / "1" / "model.onnx")) for m in models}

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, sessions[model].run(outputs, inputs), strict=True))

    params = cascade("parameters").Parameters()
    result = {}
    for size, photo in photos.items():
        log(f"in-process: {size}")
        run = lambda: asyncio.run(mtcnn_cascade.detect_faces(photo, params, infer, 1024, False))  # noqa: E731
        run()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - started)
        result[size] = statistics.median(seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1mp,3mp,12mp", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    photos = {s: decoded(jpeg_bytes(real_photo(float(s.removesuffix("mp"))))) for s in sizes}
    print(f"`{' '.join(['python -m benchmarks.triton_shm', *sys.argv[1:]])}`\n")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}\n")
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        ports = TritonPorts(free_port(), free_port(), free_port())
        with TritonServer(repository, ports) as server:
            samples = asyncio.run(served(photos, server, args.repeats))
        local = in_process(photos, repository, args.repeats)
    rows = []
    for size, photo in photos.items():
        ms = {way: statistics.median(s) * 1000 for way, s in samples[size].items()}
        rows.append(
            [
                size,
                f"{photo.nbytes / 1e6:.0f}",
                ms["grpc"],
                ms["shm"],
                f"{(ms['grpc'] - ms['shm']) / ms['grpc'] * 100:.0f} %",
                ms["prepare"],
                local[size] * 1000,
            ]
        )
    headers = [
        "size",
        "RGB MB",
        "gRPC ms",
        "system shm ms",
        "shm saves",
        "gateway's gRPC prep ms",
        "in-process ms",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
