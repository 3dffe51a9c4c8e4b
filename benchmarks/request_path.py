"""Which gateway modules one `POST /v1/analyze` (an upload, every ready model, the store not
asked: Cache-Control: no-cache) passes through, in order, and how often the reading returns to a
module already left: ARCHITECTURE.md's "One request", measured. `tests/utils/request_path.py`
records and reads them (its docstring gives the counting rule, "as read" and "in time order");
`tests/gateway/test_request_path.py` checks the returns of the path that asks the store. Runs a
real Triton (the wheel's) on the test models and the app in process:
`python -m benchmarks.request_path`."""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from conversion.registry import converters
from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from picmetric.cli import build_parser, run_convert
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.request_path import collapsed, record, recording


def report(entries: list[str], name: Any = lambda module: module) -> None:
    path = collapsed([name(m) for m in entries])
    counts = Counter(path)
    print(" > ".join(path))
    print(f"{len(counts)} entered, {len(path) - len(counts)} returns to one already left;")
    print("most entered:", ", ".join(f"{m} {n}" for m, n in counts.most_common(5)))


def sub_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "(top level)"


def main() -> None:
    argparse.ArgumentParser(
        prog="python -m benchmarks.request_path", description=__doc__
    ).parse_args()
    from fastapi.testclient import TestClient

    from gateway.main import create_app
    from gateway.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="picmetric-request-path-"))
    names = [
        f.name
        for f in MODEL_REPOSITORY.iterdir()
        if f.is_dir() and f.name.startswith(tuple(converters()))
    ]
    repository = copy_models(names, folder / "model_repository")
    args = ["convert", "all", "--weights", "random", "--repository", str(repository)]
    run_convert(build_parser().parse_args(args))
    rgb = sample_photos(("astronaut",))["astronaut"]
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    with TritonServer(repository, ports, log_file=folder / "tritonserver.log") as triton:
        settings = Settings(
            triton_grpc_url=triton.grpc_url,
            database_url=f"sqlite:///{folder / 'analyses.db'}",
            model_repository=repository,
            allowed_hosts=["testserver"],  # the test client's Host
        )
        with recording() as entries, TestClient(create_app(settings)) as client:

            def analyze() -> None:
                client.post(
                    "/v1/analyze",
                    files={"file": ("photo.jpg", jpeg, "image/jpeg")},
                    headers={"Cache-Control": "no-cache"},
                ).raise_for_status()

            for _ in range(2):  # the second: every model ready and warm
                record(entries, analyze)
    read = entries.as_read()
    print("Modules, as read:")
    report([m.removeprefix("gateway.") for m in read])
    print("Sub-packages, as read:")
    report(read, sub_package)
    print("Modules, in time order:")
    report([m.removeprefix("gateway.") for m, _ in entries.of_request()])


if __name__ == "__main__":
    main()
