"""Which gateway modules one `POST /v1/analyze` (an upload, every ready model, the store not
asked: Cache-Control: no-cache) passes through, in order, and how often the reading returns to a
module already left: ARCHITECTURE.md's "One request", measured. A module is entered when one of
its functions starts (a new frame, not a coroutine resuming) called from another gateway module
(the nearest one up the stack: contextlib, pydantic or the event loop between are not ours).
Every gateway module counts, the cross-cutting ones too (tracing, admission, results' types: a
property or validator of a type is a function of its module), and calls into one module one
after the other are one entry.

Two readings are printed. "In time order": the entries as they happened, so the strands that run
at once (the quality figures' task beside the models, each model's call in its own task) are
interleaved. "As read" (the counting rule of "one request reads top-down"): each strand (an
asyncio task or a worker thread: a function started with no gateway frame above it, its parent
the strand whose context it copied) is read whole where it starts, as one reads the code; and of
sibling strands started by the same function (one task per model: the same code, as a loop's
body) the ones that enter exactly the same modules in the same order are read once. A sibling
that enters other modules is read too, and counted. Both readings keep only the request's
strands (its first entry's and those started from it): a background task that happens to run
meanwhile (the Triton replicas' watcher) is not the request's path.
Runs a real Triton (the wheel's) on the test models and the app in process:
`python -m benchmarks.request_path`."""

from __future__ import annotations

import argparse
import contextvars
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import cv2

from conversion.registry import converters
from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from picmetric.cli import build_parser, run_convert
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

_STRAND: contextvars.ContextVar[int] = contextvars.ContextVar("strand", default=0)


class Entries:
    """Records each entry into a gateway module while `on`, with the strand it happened in."""

    def __init__(self) -> None:
        self.on = False
        self.modules: list[str] = []
        self.strands: list[int] = []  # of each entry in `modules`
        self.parents: dict[int, int] = {}  # strand: the strand it started from (0: none)
        self.roots: dict[int, str] = {}  # strand: the function that started it
        self._seen: set[int] = set()
        self._frames: list[FrameType] = []  # kept alive, so that no id is reused

    def clear(self) -> None:
        self.modules.clear()
        self.strands.clear()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.on:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("gateway") or id(frame) in self._seen:
            return
        self._seen.add(id(frame))
        self._frames.append(frame)
        back, caller = frame.f_back, ""
        while back is not None and not caller:
            name = back.f_globals.get("__name__", "")
            caller = name if name.startswith("gateway") else ""
            back = back.f_back
        if not caller:  # a strand starts: a task's coroutine, a worker thread's function
            strand = len(self.roots) + 1
            self.parents[strand] = _STRAND.get()
            self.roots[strand] = f"{module}.{frame.f_code.co_qualname}"
            _STRAND.set(strand)  # in the task's (or the thread's copied) context
        if caller != module:
            self.modules.append(module)
            self.strands.append(_STRAND.get())

    def of_request(self) -> list[tuple[str, int]]:
        """The (module, strand) entries of the request's strands, in time order."""
        ours = set(self.strands[:1])
        for strand in dict.fromkeys(self.strands):
            if self.parents.get(strand) in ours:
                ours.add(strand)
        return [(m, s) for m, s in zip(self.modules, self.strands, strict=True) if s in ours]

    def as_read(self) -> list[str]:
        """The entries with each strand read whole where it starts, identical siblings once."""
        entries = self.of_request()
        strands = [strand for _, strand in entries]
        seen = set(strands)
        children: dict[int, list[int]] = {}
        for strand in dict.fromkeys(strands):
            parent = self.parents[strand] if self.parents.get(strand) in seen else 0
            children.setdefault(parent, []).append(strand)

        def read(strand: int) -> list[str]:
            path: list[str] = []
            starts = {strands.index(child): child for child in children.get(strand, [])}
            read_already: set[tuple[str, tuple[str, ...]]] = set()
            for index, (module, owner) in enumerate(entries):
                if owner == strand:
                    path.append(module)
                elif index in starts:
                    child = starts[index]
                    reading = read(child)
                    key = (self.roots[child], tuple(_collapsed(reading)))
                    if key not in read_already:
                        read_already.add(key)
                        path += reading
            return path

        return read(0)


def _collapsed(path: list[str]) -> list[str]:
    """`path` without repeats: calls into one module one after the other are one entry."""
    return [m for i, m in enumerate(path) if i == 0 or path[i - 1] != m]


def report(entries: list[str], name: Any = lambda module: module) -> None:
    path = _collapsed([name(m) for m in entries])
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
    entries = Entries()
    with TritonServer(repository, ports, log_file=folder / "tritonserver.log") as triton:
        settings = Settings(
            triton_grpc_url=triton.grpc_url,
            database_url=f"sqlite:///{folder / 'analyses.db'}",
            model_repository=repository,
            allowed_hosts=["testserver"],  # the test client's Host
        )
        sys.setprofile(entries)
        threading.setprofile(entries)  # the test client's event loop and the worker threads
        with TestClient(create_app(settings)) as client:
            for _ in range(2):  # the second: every model ready and warm
                entries.clear()
                entries.on = True
                answer = client.post(
                    "/v1/analyze",
                    files={"file": ("photo.jpg", jpeg, "image/jpeg")},
                    headers={"Cache-Control": "no-cache"},
                )
                entries.on = False
                answer.raise_for_status()
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    read = entries.as_read()
    print("Modules, as read:")
    report([m.removeprefix("gateway.") for m in read])
    print("Sub-packages, as read:")
    report(read, sub_package)
    print("Modules, in time order:")
    report([m.removeprefix("gateway.") for m, _ in entries.of_request()])


if __name__ == "__main__":
    main()
