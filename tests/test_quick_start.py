"""The README's quick start, as a newcomer follows it: the block after `<!-- quick-start -->`
runs line by line in an empty folder against a gateway served as `picmetric serve` serves it (no
S3 bucket: uploads kept in a local folder), `picmetric` on PATH as `source .venv/bin/activate`
puts it; every line succeeds, every answer is a real one, and the README's example answer has
exactly the fields the real one has."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.paths import PROJECT_ROOT
from picmetric.triton_server import TritonServer
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

README = PROJECT_ROOT / "README.md"
SERVED = "http://127.0.0.1:8080"  # serve's address, as the README writes it


def quick_start() -> list[str]:
    """The quick start's command lines, comments and all."""
    text = README.read_text()
    block = re.search(r"<!-- quick-start -->\n```sh\n(.*?)```", text, re.S)
    assert block is not None, "README.md lost its quick-start block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def example_answer() -> dict[str, Any]:
    """The README's example answer: the first JSON block after the quick start."""
    text = README.read_text().split("<!-- quick-start -->", 1)[1]
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block is not None
    return dict(json.loads(block.group(1)))


def shape(value: Any) -> Any:
    """The fields of a JSON value, recursively (a list by its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return value if value is None else "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


@pytest.fixture(scope="module")
def served(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The gateway as `serve` runs it: SQLite, no bucket, uploads in a folder."""
    folder = tmp_path_factory.mktemp("served")
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'picmetric.db'}",
        upload_dir=str(folder / "uploads"),
    )
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


def test_the_quick_start_works_as_written(served: str, tmp_path: Path) -> None:
    bin_folder = tmp_path / "venv-bin"  # what `source .venv/bin/activate` puts on PATH
    bin_folder.mkdir()
    picmetric = bin_folder / "picmetric"
    picmetric.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m picmetric "$@"\n')
    picmetric.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_folder}:{os.environ['PATH']}",
        "PYTHONPATH": str(PROJECT_ROOT),
        # The CLI's default gateway is serve's address; the served one here is on another port.
        "PICMETRIC_GATEWAY": served,
    }
    work = tmp_path / "checkout"
    work.mkdir()
    answers: dict[str, str] = {}
    folder = work
    for line in quick_start():
        if line.startswith("source .venv/bin/activate"):
            continue  # done above
        if line.startswith("cd "):
            folder = folder / line.split()[1]
            continue
        run = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line.replace(SERVED, served)],
            cwd=folder,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr, line
        answers[line.split("#")[0].strip()] = run.stdout
    curls = [
        json.loads(out) for line, out in answers.items() if "curl" in line and "-o" not in line
    ]
    assert curls and all("errortype" not in answer for answer in curls), curls
    analysed, kept = curls
    assert kept["source"]["url"].startswith("upload://"), kept
    assert [m["name"] for m in kept["models"]] == ["yolov3", "mtcnn"]
    assert (folder / "astronaut-annotated.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (folder / "astronaut-drawn.png").read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(x) for x in (folder / "faces.jsonl").read_text().splitlines()]
    assert {Path(x["photo"]).name for x in lines} >= {"astronaut.jpg", "rocket.jpg"}
    assert all(x["error"] is None for x in lines)

    example = example_answer()
    assert shape(example) == shape(analysed), "the README's example answer lacks or adds fields"
    assert example["summary"] == analysed["summary"]
    assert [w["kind"] for w in example["warnings"]] == [w["kind"] for w in analysed["warnings"]]
