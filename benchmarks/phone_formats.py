"""A 12 MP phone photo (tests/utils/real_photos.py) as the plain JPEG (OpenCV, quality 90), an MPF
JPEG (Pillow's MPO writer), a HEIC in 512x512 tiles as an iPhone writes it (pillow-heif, x265,
quality 90) and an AVIF (Pillow, quality 90), the same pixels in each:

- decoded in-process by the gateway's `decode_rgb` at full resolution, each format in a fresh
  interpreter: the median decode time, and how far the peak RSS (VmHWM, reset first through
  clear_refs) rises above the RSS during the first decode (the codec's libraries loaded before),
  next to what `DecodePlan.memory` counts for the decode memory budget;
- with --gateway, through the gateway (`POST /v1/analyze`, MTCNN alone, which needs the photo at
  full resolution; a new threshold per request so the cache never answers): the median of the
  request's wall time and of its decode stage (`timings_ms.decode`).

Prints Markdown tables for BENCHMARKS.md (progress goes to stderr).

    python -m benchmarks.phone_formats [--repeats 5] [--gateway] [--repository PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
import pillow_heif

from benchmarks._measure import log, machine, table
from benchmarks._served import prepare_repository, wait_ready
from core.paths import PROJECT_ROOT
from gateway.images.decode import plan_decode
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.phone_formats import encode
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.services import gateway_env, gateway_process

MB = 1_000_000
TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "HEIF": "image/heic", "AVIF": "image/avif"}
# Runs in a fresh interpreter: the photo on stdin, a small file of the same format to load the
# codec first; prints the peak RSS rise of the first decode and the median of `repeats` decodes.
_DECODE = """
import statistics, sys, time
from gateway.images.decode import decode_rgb
def kb(field):
    status = open('/proc/self/status').read().splitlines()
    return next(int(l.split()[1]) for l in status if l.startswith(field + ':'))
data = sys.stdin.buffer.read()
decode_rgb(open(sys.argv[1], 'rb').read(), 40_000_000)
open('/proc/self/clear_refs', 'w').write('5')
before = kb('VmRSS')
decode_rgb(data, 40_000_000)
peak = (kb('VmHWM') - before) * 1024
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    decode_rgb(data, 40_000_000)
    times.append(time.perf_counter() - started)
print(peak, statistics.median(times))
"""


def phone_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The 12 MP photo in each format, and a 1 MP one of each to load the codecs."""
    files: dict[str, dict[str, bytes]] = {}
    for size in (12, 1):
        photo = real_photo(size)
        log(f"encoding the {size} MP photo")
        pillow_heif.options.GRID_TILE_SIZE = 512
        files[str(size)] = {
            "JPEG": jpeg_bytes(photo),
            "MPO": encode(photo, "MPO", quality=90),
            "HEIF": encode(photo, "HEIF", quality=90),
            "AVIF": encode(photo, "AVIF", quality=90),
        }
    return files["12"], files["1"]


def in_process(files: dict[str, bytes], warm: dict[str, bytes], repeats: int) -> list[list[object]]:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for format, data in files.items():
            log(f"decode: {format}")
            small = Path(tmp) / format
            small.write_bytes(warm[format])
            done = subprocess.run(
                [sys.executable, "-c", _DECODE, str(small), str(repeats)],
                input=data,
                capture_output=True,
                check=True,
                cwd=PROJECT_ROOT,
            )
            peak, seconds = done.stdout.split()
            plan = plan_decode(data, 40_000_000, 64)
            rows.append(
                [
                    format,
                    f"{len(data) / MB:.2f}",
                    float(seconds) * 1000,
                    int(peak) / MB,
                    plan.memory / MB,
                ]
            )
    return rows


def through_gateway(files: dict[str, bytes], repository: Path, repeats: int) -> list[list[object]]:
    rows: list[list[object]] = []
    ports = TritonPorts(free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory() as tmp, TritonServer(repository, ports) as server:
        env = gateway_env(server, repository, f"sqlite:///{tmp}/benchmark.db")
        with gateway_process(env, Path(tmp) / "gateway.log") as url:
            wait_ready(url)
            count = 0
            for format, data in files.items():
                log(f"gateway: {format}")
                walls, decodes = [], []
                for i in range(repeats + 1):  # the first warms up
                    count += 1
                    answer = httpx.post(
                        f"{url}/v1/analyze",
                        files={"file": (f"photo.{format.lower()}", data, TYPES[format])},
                        data={"models": "mtcnn", "threshold": f"{0.2 + count / 1e5:.5f}"},
                        timeout=600,
                    )
                    answer.raise_for_status()
                    body = answer.json()
                    if i:
                        walls.append(answer.elapsed.total_seconds() * 1000)
                        decodes.append(body["timings_ms"]["decode"])
                faces = len(body["results"]["mtcnn"])
                rows.append([format, statistics.median(walls), statistics.median(decodes), faces])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gateway", action="store_true", help="also through the gateway")
    parser.add_argument("--repository", type=Path, help="a converted model repository")
    args = parser.parse_args()
    files, warm = phone_files()
    libheif = pillow_heif.libheif_info()["libheif"]
    print(f"{dt.date.today()}, {machine()}, libheif {libheif}, {args.repeats} repeats\n")
    headers = ["12 MP as", "file MB", "decode ms", "peak MB", "counted MB"]
    print(table(headers, in_process(files, warm, args.repeats)))
    if args.gateway:
        with ExitStack() as stack:
            repository = prepare_repository(args.repository, stack)
            rows = through_gateway(files, repository, args.repeats)
        print()
        print(table(["12 MP as", "request ms", "decode stage ms", "faces"], rows))


if __name__ == "__main__":
    main()
