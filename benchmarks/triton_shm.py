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
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc._utils import _get_inference_request

from benchmarks._measure import cpu_seconds, descendants, log, machine, table
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


def triton_pids(server: TritonServer) -> list[int]:
    assert server.process is not None
    return [server.process.pid, *descendants(server.process.pid)]


OPTIONS = Options(threshold=0.5, max_results=10)


def order(repeat: int) -> tuple[str, ...]:
    """Both ways, in alternating order from one repeat to the next."""
    return WAYS if repeat % 2 == 0 else WAYS[::-1]


# A Python-backend model that only reads its input: what moving the photo into Triton's Python
# backend costs, without the cascade's seconds (and their noise) around it.
TRANSFER_CONFIG = """name: "transfer"
backend: "python"
input { name: "image" data_type: TYPE_UINT8 dims: [-1, -1, 3] }
output { name: "shape" data_type: TYPE_INT64 dims: [3] }
instance_group { count: 1 kind: KIND_CPU }
"""
TRANSFER_MODEL = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            shape = pb_utils.Tensor("shape", np.array(image.shape, np.int64))
            answers.append(pb_utils.InferenceResponse([shape]))
        return answers
"""


async def transfer_alone(
    photos: dict[str, np.ndarray], server: TritonServer, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per size, seconds and CPU seconds of a call of the `transfer` model by way."""
    client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=TRITON_CHANNEL)
    shared = SharedInputs("auto", 1, max(p.nbytes for p in photos.values()), server.admin_key)
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    async def send(way: str, rgb: np.ndarray) -> None:
        async with shared.lease(client, server.grpc_url, "image", rgb, "UINT8") as tensor:
            if way == "off" or tensor is None:
                tensor = _input("image", rgb, "UINT8")
            result = await client.infer("transfer", [tensor])
            assert list(result.as_numpy("shape")) == list(rgb.shape)

    try:
        for size, rgb in photos.items():
            log(f"transfer alone: {size}")
            for way in WAYS:
                await send(way, rgb)  # warm-up
            for i in range(repeats):
                for way in order(i):
                    pids = [os.getpid(), *triton_pids(server)]
                    cpu, started = cpu_seconds(pids), time.perf_counter()
                    await send(way, rgb)
                    samples[size][way].append(time.perf_counter() - started)
                    samples[size][f"{way} cpu"].append(cpu_seconds(pids) - cpu)
    finally:
        await shared.close({server.grpc_url: client})
        await client.close()
    return samples


def transfer_server(stack: ExitStack) -> TritonServer:
    root = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "transfer_repository"
    (root / "transfer" / "1").mkdir(parents=True)
    (root / "transfer" / "config.pbtxt").write_text(TRANSFER_CONFIG)
    (root / "transfer" / "1" / "model.py").write_text(TRANSFER_MODEL)
    ports = TritonPorts(free_port(), free_port(), free_port())
    return stack.enter_context(TritonServer(root, ports))


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
                    pids = [os.getpid(), *triton_pids(server)]
                    cpu, started = cpu_seconds(pids), time.perf_counter()
                    await run_models([MODELS["mtcnn"]], calls[way], image, OPTIONS)
                    samples[size][way].append(time.perf_counter() - started)
                    samples[size][f"{way} cpu"].append(cpu_seconds(pids) - cpu)
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
    """Per size, seconds of POST /v1/analyze (all three models) by way, through two gateways,
    and the CPU seconds the gateway and Triton spent on it."""
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        urls, gateways = {}, {}
        for way in WAYS:
            env = gateway_env(
                server,
                repository,
                f"sqlite:///{tmp}/{way}.db",
                triton_timeout_s="600",
                triton_shared_memory=way,
            )
            others = set(descendants(os.getpid()))
            urls[way] = stack.enter_context(gateway_process(env, Path(tmp) / f"{way}.log"))
            gateways[way] = [p for p in descendants(os.getpid()) if p not in others]
            wait_ready(urls[way])
        count = 0
        for size, jpeg in jpegs.items():
            log(f"/v1/analyze: {size}")
            for way in WAYS:
                analyze(urls[way], size, jpeg, 0.1 + count / 1e5)  # warm-up
                count += 1

            for i in range(repeats):
                for way in order(i):
                    count += 1
                    pids = [*gateways[way], *triton_pids(server)]
                    cpu = cpu_seconds(pids)
                    body = analyze(urls[way], size, jpeg, 0.2 + count / 1e5)
                    samples[size][way].append(body["wall_ms"] / 1000)
                    samples[size][f"{way} cpu"].append(cpu_seconds(pids) - cpu)
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


def mean_ms(samples: list[float]) -> float:
    return statistics.fmean(samples) * 1000


def saved(samples: dict[str, list[float]], suffix: str = "") -> str:
    """Wall time: the median of each repeat's saving (its two ways ran back to back, so a load
    that comes and goes on a shared machine weighs on both), and its range over the repeats.
    CPU time (counted in ticks of 10 ms): the saving of the totals."""
    off, on = samples["off" + suffix], samples["on" + suffix]
    if suffix:
        return f"{(sum(off) - sum(on)) / sum(off) * 100:.0f} %"
    pairs = [(a - b) / a * 100 for a, b in zip(off, on, strict=True)]
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
        alone = asyncio.run(transfer_alone(photos, transfer_server(stack), args.repeats * 3))
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
    cpu_headers = [
        "size",
        "mtcnn call, gRPC CPU ms",
        "mtcnn call, shm CPU ms",
        "saved",
        "/v1/analyze, gRPC CPU ms",
        "/v1/analyze, shm CPU ms",
        "saved",
    ]
    cpu_rows = [
        [
            size,
            mean_ms(calls[size]["off cpu"]),
            mean_ms(calls[size]["on cpu"]),
            saved(calls[size], " cpu"),
            mean_ms(served[size]["off cpu"]),
            mean_ms(served[size]["on cpu"]),
            saved(served[size], " cpu"),
        ]
        for size in photos
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
    alone_headers = [
        "size",
        "gRPC ms",
        "shm ms",
        "saved",
        "gRPC CPU ms",
        "shm CPU ms",
        "saved",
    ]
    alone_rows = [
        [
            size,
            ms(alone[size]["off"]),
            ms(alone[size]["on"]),
            saved(alone[size]),
            mean_ms(alone[size]["off cpu"]),
            mean_ms(alone[size]["on cpu"]),
            saved(alone[size], " cpu"),
        ]
        for size in photos
    ]
    print(
        f"The transfer alone: a Python-backend model that only reads the photo, "
        f"{args.repeats * 3} interleaved repeats (CPU: this process and Triton with its stub):\n"
    )
    print(table(alone_headers, alone_rows) + "\n")
    print(
        f"Medians of {args.repeats} interleaved repeats; `saved`: the median of each repeat's "
        "saving (its range in brackets).\n"
    )
    print(table(headers, rows) + "\n")
    print(
        "CPU time of the same calls (user + system, /proc: this process or the gateway, and "
        "Triton with its stubs), means:\n"
    )
    print(table(cpu_headers, cpu_rows))


if __name__ == "__main__":
    main()
