"""The transfer of a full-resolution photo to Triton's `mtcnn` (issue 29), side by side in one
run on the same local Triton, interleaved repeat by repeat (the order alternating), on the same
real-size photos (tests/utils/real_photos.py):

- the `mtcnn` call as the gateway makes it (gateway.triton.inference.run_models): the photo
  inside the gRPC request (PICMETRIC_TRITON_SHARED_MEMORY=off) or through Triton's system shared
  memory (gateway/triton/shared_memory.py, `auto` on a loopback Triton); also the gateway's own
  work for the gRPC call alone (tritonclient's InferInput, the request message serialized);
- `POST /v1/analyze` with all three models, through two gateways on that Triton, one with shared
  memory off and one with it on (a new threshold per request, so no cache answers);
- the same cascade in-process (cascade.py with the networks under ONNX Runtime, no Triton),
  after Triton is stopped.

Prints Markdown tables for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.triton_shm [--sizes 1mp,3mp,12mp] [--repeats 7] [--repository PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc._utils import _get_inference_request

from benchmarks._measure import log, machine, table
from benchmarks._served import analyze, prepare_repository, wait_ready
from gateway.images.decode import DecodedImage
from gateway.results import Options
from gateway.services import TRITON_CHANNEL
from gateway.triton.inference import MODELS, Call, _input, run_models
from gateway.triton.shared_memory import SharedInputs
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.mtcnn_faces import cascade
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo
from tests.utils.services import gateway_env, gateway_process

WAYS = ("off", "on")  # PICMETRIC_TRITON_SHARED_MEMORY
OPTIONS = Options(threshold=0.5, max_results=10)


def order(repeat: int) -> tuple[str, ...]:
    """Both ways, in alternating order from one repeat to the next."""
    return WAYS if repeat % 2 == 0 else WAYS[::-1]


def interleaved(repeats: int, run: Callable[[str], float]) -> dict[str, list[float]]:
    """`run(way)`'s seconds, each repeat running both ways."""
    samples: dict[str, list[float]] = defaultdict(list)
    for i in range(repeats):
        for way in order(i):
            samples[way].append(run(way))
    return samples


async def mtcnn_calls(
    photos: dict[str, np.ndarray], server: TritonServer, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per size, seconds of the gateway's `mtcnn` call by way, and of its gRPC preparation."""
    client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=TRITON_CHANNEL)
    largest = max(p.nbytes for p in photos.values())
    shared = SharedInputs("auto", 1, largest, server.admin_key)
    calls = {
        "off": Call(client, 600, Path("."), address=server.grpc_url),
        "on": Call(client, 600, Path("."), address=server.grpc_url, shared=shared),
    }
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        for size, rgb in photos.items():
            log(f"mtcnn calls: {size}")
            image = DecodedImage(rgb, rgb.shape[1], rgb.shape[0])
            answers = {}
            for way, call in calls.items():  # warm-up, and the same faces both ways
                found, _ = await run_models([MODELS["mtcnn"]], call, image, OPTIONS)
                answers[way] = found["mtcnn"].detections
            if answers["off"] != answers["on"]:
                raise RuntimeError(f"{size}: the faces differ with shared memory on and off")

            for i in range(repeats):
                for way in order(i):
                    started = time.perf_counter()
                    await run_models([MODELS["mtcnn"]], calls[way], image, OPTIONS)
                    samples[size][way].append(time.perf_counter() - started)
                started = time.perf_counter()
                inputs = [_input("image", rgb, "UINT8")]
                request = _get_inference_request(
                    "mtcnn", inputs, "", "", None, 0, False, False, 0, None, None
                )
                request.SerializeToString()
                samples[size]["prepare"].append(time.perf_counter() - started)
        assert shared.shared_calls >= len(photos) * (repeats + 1)
    finally:
        await shared.close({server.grpc_url: client})
        await client.close()
    return samples


def analyses(
    jpegs: dict[str, bytes], server: TritonServer, repository: Path, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per size, seconds of POST /v1/analyze (all three models) by way, through two gateways."""
    samples = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        urls = {}
        for way in WAYS:
            env = gateway_env(
                server,
                repository,
                f"sqlite:///{tmp}/{way}.db",
                triton_timeout_s="600",
                triton_shared_memory=way,
            )
            urls[way] = stack.enter_context(gateway_process(env, Path(tmp) / f"{way}.log"))
            wait_ready(urls[way])
        count = 0
        for size, jpeg in jpegs.items():
            log(f"/v1/analyze: {size}")
            for way in WAYS:
                analyze(urls[way], size, jpeg, 0.1 + count / 1e5)  # warm-up
                count += 1

            def post(way: str, size: str = size, jpeg: bytes = jpeg) -> float:
                nonlocal count
                count += 1
                return analyze(urls[way], size, jpeg, 0.2 + count / 1e5)["wall_ms"] / 1000

            samples[size] = dict(interleaved(repeats, post))
        for way in WAYS:
            text = (Path(tmp) / f"{way}.log").read_text()
            if way == "on" and "large inputs go through shared memory" not in text:
                raise RuntimeError("The gateway with shared memory on did not use it")
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
        seconds = []
        for i in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            asyncio.run(mtcnn_cascade.detect_faces(photo, params, infer, 1024, False))
            if i:
                seconds.append(time.perf_counter() - started)
        result[size] = statistics.median(seconds)
    return result


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def saved(samples: dict[str, list[float]]) -> str:
    """The median of each repeat's saving (its two ways ran back to back, so a load that comes
    and goes on a shared machine weighs on both), and its range over the repeats."""
    pairs = [(off - on) / off * 100 for off, on in zip(samples["off"], samples["on"], strict=True)]
    return f"{statistics.median(pairs):.0f} % ({min(pairs):.0f} to {max(pairs):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1mp,3mp,12mp", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    jpegs = {s: jpeg_bytes(real_photo(float(s.removesuffix("mp")))) for s in sizes}
    photos = {s: decoded(jpeg) for s, jpeg in jpegs.items()}
    print(f"`{' '.join(['python -m benchmarks.triton_shm', *sys.argv[1:]])}`\n")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}\n")
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        ports = TritonPorts(free_port(), free_port(), free_port())
        with TritonServer(repository, ports) as server:
            calls = asyncio.run(mtcnn_calls(photos, server, args.repeats))
            served = analyses(jpegs, server, repository, args.repeats)
        local = in_process(photos, repository, args.repeats)
    headers = [
        "size",
        "RGB MB",
        "mtcnn call, gRPC ms",
        "mtcnn call, shm ms",
        "saved",
        "/v1/analyze, gRPC ms",
        "/v1/analyze, shm ms",
        "saved",
        "gateway's gRPC prep ms",
        "cascade in-process ms",
    ]
    rows = [
        [
            size,
            f"{photo.nbytes / 1e6:.0f}",
            ms(calls[size]["off"]),
            ms(calls[size]["on"]),
            saved(calls[size]),
            ms(served[size]["off"]),
            ms(served[size]["on"]),
            saved(served[size]),
            ms(calls[size]["prepare"]),
            local[size] * 1000,
        ]
        for size, photo in photos.items()
    ]
    print(
        f"Medians of {args.repeats} interleaved repeats; `saved`: the median of each repeat's "
        "saving (its range in brackets).\n"
    )
    print(table(headers, rows))


if __name__ == "__main__":
    main()
