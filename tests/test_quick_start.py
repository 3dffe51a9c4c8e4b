"""The README's quick start, as a newcomer follows it: the block after `<!-- quick-start -->`
runs line by line in an empty folder against `picmetric serve` on its defaults (what
`./bootstrap.sh serve` starts: no S3 bucket, so /v1/images keeps uploads in its cache; its own
Redis and job worker), with `picmetric` on PATH as the README's `source .venv/bin/activate` puts
it; every line succeeds, every answer is a real one, and the README's example answer has exactly
the fields the real one has."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.paths import PROJECT_ROOT
from tests.utils.ports import free_port
from tests.utils.services import wait_until

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


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).is_success
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def served(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`picmetric serve` as `./bootstrap.sh serve` runs it, with no PICMETRIC_ setting but the
    operations port, on the test models and on free ports (8080 and 8000-8002 may be another's
    here), its cache (uploads, Redis, logs) in a folder of its own; yields that folder, with the
    gateway's URL in `url`."""
    home = tmp_path_factory.mktemp("served")
    port = free_port()
    command = [
        sys.executable, "-m", "picmetric", "serve", "--repository", str(model_repository),
        "--http-port", str(free_port()), "--grpc-port", str(free_port()),
        "--metrics-port", str(free_port()), "--port", str(port),
    ]  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PICMETRIC_")},
        "PICMETRIC_OPS_PORT": str(free_port()),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    log = home / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        serve = subprocess.Popen(command, cwd=home, env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: serve.poll() is not None or _ready(url), 300, "serve's readiness", log)
        assert serve.poll() is None, log.read_text()[-3000:]
        (home / "url").write_text(url)
        yield home
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


def activated(venv: Path) -> dict[str, str]:
    """The environment after `source VENV/bin/activate`, as the README's first line makes it."""
    shown = subprocess.run(
        ["bash", "-c", f'source "{venv}/bin/activate" && env -0'],
        capture_output=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    ).stdout.decode()
    return dict(item.split("=", 1) for item in shown.split("\0") if "=" in item)


def test_the_quick_start_works_as_written(served: Path, tmp_path: Path) -> None:
    url = (served / "url").read_text()
    # This interpreter's virtual environment stands for the checkout's .venv (bootstrap.sh's).
    assert re.search(r"^VENV=\.venv$", (PROJECT_ROOT / "bootstrap.sh").read_text(), re.M)
    venv = Path(sys.prefix)
    assert (venv / "bin" / "activate").exists(), "the tests run in a virtual environment"
    env = {
        **activated(venv),
        # this checkout's code for the installed `picmetric` (another worktree's install)
        "PYTHONPATH": str(PROJECT_ROOT),
        # The CLI's default gateway is serve's address; the served one here is on another port.
        "PICMETRIC_GATEWAY": url,
    }
    assert shutil.which("picmetric", path=env["PATH"]) == str(venv / "bin" / "picmetric")
    work = tmp_path / "checkout"
    work.mkdir()
    answers: dict[str, str] = {}
    folder = work
    for line in quick_start():
        if line.startswith("source .venv/bin/activate"):
            continue  # `activated` above
        if line.startswith("cd "):
            folder = folder / line.split()[1]
            continue
        run = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line.replace(SERVED, url)],
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
    (upload,) = (served / "cache" / "picmetric" / "uploads").glob("*/*")
    assert kept["source"]["url"] == f"upload://{upload.name}", "kept in serve's cache"
    listed = answers["picmetric models"].splitlines()
    assert {line.split()[0] for line in listed} == {"resnet50", "yolov3", "mtcnn"}, listed
    drawn = answers["picmetric analyze astronaut.jpg --draw astronaut-drawn.png"]
    assert drawn.startswith("512x512 photo, analysis "), drawn
    lines = [json.loads(x) for x in (folder / "faces.jsonl").read_text().splitlines()]
    photos = {p.name for p in folder.iterdir() if p.suffix in (".jpg", ".png")}
    assert {Path(x["photo"]).name for x in lines} == photos, "every photo in the folder"
    assert photos >= {"astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"}
    assert all(x["error"] is None for x in lines)
    faces = {Path(x["photo"]).name: x["analysis"]["summary"]["faces"] for x in lines}
    assert faces["astronaut.jpg"] == 1, faces

    # "picmetric analyze astronaut.jpg --models resnet50,mtcnn --threshold 0.5 --json prints the
    # same": the same answer, from the store.
    same = re.search(r"\(`(picmetric analyze [^`]*--json)` prints the same\)", README.read_text())
    assert same is not None, "the README no longer names the CLI's equivalent of the first curl"
    printed = subprocess.run(
        ["bash", "-c", same.group(1)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    cli = json.loads(printed.stdout)
    assert cli["id"] == analysed["id"] and cli["results"] == analysed["results"]

    example = example_answer()
    assert shape(example) == shape(analysed), "the README's example answer lacks or adds fields"
    assert example["summary"] == analysed["summary"]
    assert [w["kind"] for w in example["warnings"]] == [w["kind"] for w in analysed["warnings"]]
