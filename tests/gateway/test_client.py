"""The client commands (picmetric/client.py, picmetric/client_commands.py) against the real
gateway: `analyze` of one photo (a summary for a person, the JSON, the drawing in the format its
extension names), of a folder through /v1/batch (JSON lines, a photo failing alone), `show`,
`models`, `samples`; failures as one line without a traceback, or JSON with --json, each kind
with its exit code, and usage errors found before anything is sent."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from core.paths import PROJECT_ROOT
from gateway.images.drawing import FACE_COLOUR
from picmetric.client import ClientError, ExitCode, chunks, exit_code_for, photos_in
from picmetric.client_commands import INTERRUPTED
from picmetric.triton_server import TritonServer
from tests.gateway.conftest import Gateway
from tests.utils.analyses import count_analyses
from tests.utils.services import gateway_env, gateway_process

KEY = "cli-key-0123456789"
README = PROJECT_ROOT / "README.md"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "picmetric", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _analyze(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("analyze", "--gateway", gateway.url, *args)


def _on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`picmetric ARGS` with its stderr on a terminal (a pseudo-terminal), and what it wrote
    there."""
    controller, terminal = pty.openpty()
    try:
        command = [sys.executable, "-m", "picmetric", *args]
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=terminal, text=True,
                             timeout=300)  # fmt: skip
        os.close(terminal)
        said = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other end closed: all was read
                break
            if not chunk:
                break
            said += chunk
    finally:
        os.close(controller)
    return run, said.decode()


def test_exit_codes_tell_the_kinds_of_failure_apart() -> None:
    assert exit_code_for("unsupported_image", 415) == ExitCode.BAD_INPUT
    assert exit_code_for("forbidden_url", 403) == ExitCode.BAD_INPUT  # the URL, not the key
    assert exit_code_for("unauthorized", 401) == ExitCode.REFUSED
    assert exit_code_for("rate_limited", 429) == ExitCode.REFUSED
    assert exit_code_for("model_unavailable") == ExitCode.UNAVAILABLE
    assert exit_code_for("http_error", 504) == ExitCode.UNAVAILABLE
    assert exit_code_for("internal_error", 500) == ExitCode.FAILED
    assert len({int(code) for code in ExitCode}) == len(ExitCode)


def test_chunks_keep_urls_and_files_apart_within_count_and_bytes(tmp_path: Path) -> None:
    files = []
    for n in range(3):
        path = tmp_path / f"{n}.jpg"
        path.write_bytes(b"x" * 100)
        files.append(str(path))
    urls = ["https://example.com/a.jpg", "s3://b/k"]
    assert list(chunks([*files, *urls], most=2)) == [files[:2], files[2:], urls]
    assert list(chunks(files, most=16, most_bytes=250)) == [files[:2], files[2:]]


@pytest.mark.integration
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_analyze_prints_a_summary_and_saves_the_drawing(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    drawing = tmp_path / "astronaut-annotated.png"
    url = f"{photo_server}/astronaut.png"
    run = _analyze(
        gateway,
        url,
        "--models",
        "mtcnn,resnet50",
        "--threshold",
        "0.05",
        "--draw",
        str(drawing),
        "--no-cache",
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("512x512 photo, analysis ") and "from the store" not in lines[0]
    assert "people: not counted, faces: 1" in lines[1]
    assert any(line.startswith("labels: ") for line in lines)
    assert any("resnet50 ran on random weights" in line for line in lines)
    assert run.stderr == f"Saved the annotated photo to {drawing}\n"  # no log prefix
    assert drawing.read_bytes().startswith(b"\x89PNG"), "--draw x.png writes a PNG"
    image = cv2.imread(str(drawing), cv2.IMREAD_COLOR_RGB)
    assert image is not None and image.shape == (512, 512, 3)
    again = _analyze(gateway, url, "--models", "mtcnn,resnet50", "--threshold", "0.05",
                     "--draw", str(tmp_path / "again.jpg"))  # fmt: skip
    assert "(from the store)" in again.stdout.splitlines()[0]
    rows = count_analyses(gateway.database_url)
    fresh = _analyze(gateway, url, "--models", "mtcnn,resnet50", "--threshold", "0.05",
                     "--no-cache", "--json")  # fmt: skip
    assert json.loads(fresh.stdout)["cached"] is False, "--no-cache: the models run again"
    assert count_analyses(gateway.database_url) == rows + 1
    as_json = _analyze(gateway, url, "--models", "mtcnn", "--json", "--max-results", "3")
    body = json.loads(as_json.stdout)
    assert body["options"]["max_results"] == 3 and len(body["results"]["mtcnn"]) == 1
    # The saved file is the photo with the face box drawn on it, not a copy of the photo.
    box = body["results"]["mtcnn"][0]["box"]
    x0, y0, x1, y1 = (round(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
    edge = image[y0 - 1 : y0 + 2, x0 : x1 + 1].reshape(-1, 3).astype(int)
    near_colour = np.abs(edge - np.array(FACE_COLOUR)).max(axis=1) < 60
    assert near_colour.mean() > 0.5, "the face box's top edge is not drawn in the face colour"
    unchanged = np.abs(image.astype(int) - photos["astronaut"].astype(int)).max(axis=2) < 40
    assert unchanged.mean() > 0.8  # the rest is the photo

    shown = _run("show", body["id"], "--gateway", gateway.url, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["results"] == body["results"]
    summary = _run("show", body["id"], "--gateway", gateway.url)
    assert summary.stdout.startswith(f"512x512 photo, analysis {body['id']} (from the store)")
    models = _run("models", "--gateway", gateway.url)
    assert models.returncode == 0
    assert any(
        line.startswith("yolov3") and "random weights" in line
        for line in models.stdout.splitlines()
    )


@pytest.mark.integration
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_analyze_a_folder_through_batches_as_json_lines(
    gateway: Gateway, photo_server: str, tmp_path: Path
) -> None:
    """Four photos (one in a sub-folder, one broken) and a text file: three analyses and one
    error, in the folder's sorted order, over two batches of two; exit code 3 for the bad photo."""
    folder = tmp_path / "trip"
    (folder / "day2").mkdir(parents=True)
    for name, target in (
        ("astronaut.jpg", "a.jpg"),
        ("coffee.png", "b.png"),
        ("chelsea.jpg", "day2/d.jpg"),
    ):
        (folder / target).write_bytes(httpx.get(f"{photo_server}/{name}").content)
    (folder / "c.jpg").write_bytes(b"not a photo")
    (folder / "notes.txt").write_text("skipped")
    run = _analyze(gateway, str(folder), "--models", "mtcnn", "--json", "--batch-size", "2")
    assert run.returncode == ExitCode.BAD_INPUT, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [Path(line["photo"]).name for line in lines] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    assert lines[2]["error"]["errortype"] == "unsupported_image" and lines[2]["analysis"] is None
    assert [line["analysis"]["summary"]["faces"] for line in lines if line["analysis"]] == [1, 0, 0]
    human, bar = _on_a_terminal(
        "analyze", "--gateway", gateway.url, str(folder / "a.jpg"), str(folder / "b.png"),
        "--models", "mtcnn",
    )  # fmt: skip
    assert human.returncode == 0 and human.stdout.startswith(f"{folder / 'a.jpg'}:\n  ")
    assert "analysing [" in bar and bar.rstrip().endswith("] 2/2"), bar
    # One file, however spelled, is answered alone; a folder's one photo too, with --draw.
    alone = _analyze(gateway, f"{folder}/./a.jpg", "--models", "mtcnn")
    assert alone.returncode == 0 and alone.stdout.startswith("512x512 photo, analysis ")
    drawing = tmp_path / "day2.webp"
    drawn = _analyze(gateway, str(folder / "day2"), "--models", "mtcnn", "--draw", str(drawing))
    assert drawn.returncode == 0, drawn.stderr
    assert drawing.read_bytes()[8:12] == b"WEBP", "a folder of one photo is drawn, as WebP"


@pytest.mark.integration
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_analyze_errors_are_one_line_or_json_with_their_exit_code(
    gateway: Gateway, photo_server: str, tmp_path: Path
) -> None:
    run = _analyze(gateway, f"{photo_server}/notes.txt")
    assert run.returncode == ExitCode.BAD_INPUT and run.stdout == ""
    assert "The gateway answered 415, unsupported_image: " in run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    as_json = _analyze(gateway, f"{photo_server}/notes.txt", "--json")
    assert as_json.returncode == ExitCode.BAD_INPUT
    error = json.loads(as_json.stdout)["error"]
    assert (error["errortype"], error["status"]) == ("unsupported_image", 415)
    missing = _analyze(gateway, str(tmp_path / "nope.jpg"))
    assert missing.returncode == ExitCode.BAD_INPUT and "No such file" in missing.stderr
    unknown = _run(
        "show", "0" * 8 + "-0000-0000-0000-" + "0" * 12, "--gateway", gateway.url, "--json"
    )
    assert unknown.returncode == ExitCode.BAD_INPUT, unknown.stderr
    assert json.loads(unknown.stdout)["error"]["status"] == 404
    down = _run("analyze", "--gateway", "http://127.0.0.1:9", f"{photo_server}/a.jpg")
    assert down.returncode == ExitCode.UNAVAILABLE and "PICMETRIC_GATEWAY" in down.stderr
    # Usage errors are found before anything is sent: no analysis is stored.
    url = f"{photo_server}/astronaut.png"
    rows = count_analyses(gateway.database_url)
    for args in (
        ("--blur-faces",),
        ("--draw", str(tmp_path / "no-folder" / "x.jpg")),
        ("--draw", str(tmp_path / "x.txt")),
        ("--draw", str(tmp_path)),  # a folder, not a file
    ):
        refused = _analyze(gateway, url, *args)
        assert refused.returncode == ExitCode.USAGE, (args, refused.stderr)
        assert refused.stderr.startswith("picmetric analyze: --") and "Traceback" not in (
            refused.stderr
        )
    assert count_analyses(gateway.database_url) == rows
    # PICMETRIC_GATEWAY names the gateway when --gateway does not.
    env = {**os.environ, "PICMETRIC_GATEWAY": gateway.url}
    by_env = _run("analyze", url, "--models", "mtcnn", env=env)
    assert by_env.returncode == 0, by_env.stderr


def test_samples_writes_the_photos_the_readme_names(tmp_path: Path) -> None:
    run = _run("samples", str(tmp_path))
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert cv2.imread(str(tmp_path / "astronaut.jpg")).shape == (512, 512, 3)


@pytest.fixture(scope="module")
def keyed_gateway(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("cli-keyed")
    env = gateway_env(triton, model_repository, f"sqlite:///{folder / 'analyses.db'}", api_keys=KEY)
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


@pytest.mark.integration
def test_a_refused_key_exits_4_and_picmetric_api_key_is_sent(keyed_gateway: str) -> None:
    refused = _run("models", "--gateway", keyed_gateway, "--json")
    assert refused.returncode == ExitCode.REFUSED, refused.stderr
    assert json.loads(refused.stdout)["error"]["errortype"] == "unauthorized"
    env = {**os.environ, "PICMETRIC_API_KEY": KEY, "PICMETRIC_GATEWAY": keyed_gateway}
    listed = _run("models", env=env)
    assert listed.returncode == 0 and "mtcnn" in listed.stdout, listed.stderr


def test_photos_in_reads_files_folders_and_quoted_globs(tmp_path: Path) -> None:
    (tmp_path / "trip" / "day2").mkdir(parents=True)
    for name in ("trip/a.JPG", "trip/day2/b.heic", "trip/notes.txt", "c.png", "d.png"):
        (tmp_path / name).write_bytes(b"x")
    found = photos_in([str(tmp_path / "trip"), str(tmp_path / "*.png"), "s3://bucket/e.jpg"])
    names = [Path(p).name if not p.startswith("s3:") else p for p in found]
    assert names == ["a.JPG", "b.heic", "c.png", "d.png", "s3://bucket/e.jpg"]
    for missing in (str(tmp_path / "*.gif"), str(tmp_path / "nope.jpg")):
        with pytest.raises(ClientError) as refused:
            photos_in([missing])
        assert refused.value.exit_code == ExitCode.BAD_INPUT


def test_a_usage_error_with_json_is_json_too() -> None:
    run = _run("analyze", "a.jpg", "--threshold", "high", "--json")
    assert run.returncode == ExitCode.USAGE
    error = json.loads(run.stdout)["error"]
    assert error["errortype"] == "usage" and "--threshold" in error["message"]
    assert "invalid float value" in run.stderr  # and argparse's usage, for a person
    missing = _run("analyze", "--json")
    assert (
        missing.returncode == ExitCode.USAGE
        and "required" in json.loads(missing.stdout)["error"]["message"]
    )


def test_the_readme_lists_every_exit_code() -> None:
    section = README.read_text().split("### The command line", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \| \w", section, re.M)}
    assert listed == {int(code) for code in ExitCode} | {INTERRUPTED}


def test_a_failure_during_the_progress_bar_is_said_on_its_own_line(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    run, said = _on_a_terminal("analyze", str(tmp_path), "--gateway", "http://127.0.0.1:9")
    assert run.returncode == ExitCode.UNAVAILABLE
    lines = said.replace("\r\n", "\n").split("\n")
    assert lines[0].endswith("] 0/2") and lines[1].startswith("picmetric analyze: Could not"), said
