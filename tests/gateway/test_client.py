"""`picmetric analyze` (picmetric/client.py) against the real gateway: a summary for a person,
the JSON on request, the annotated photo saved, and errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.images.drawing import FACE_COLOUR
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


def _analyze(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "picmetric", "analyze", "--gateway", gateway.url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_analyze_prints_a_summary_and_saves_the_drawing(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    drawing = tmp_path / "astronaut-annotated.jpg"
    url = f"{photo_server}/astronaut.png"
    run = _analyze(
        gateway, url, "--models", "mtcnn,resnet50", "--threshold", "0.05", "--draw", str(drawing)
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("512x512 photo, analysis ")
    assert "faces: 1" in lines[1]
    assert any(line.startswith("labels: ") for line in lines)
    assert any("resnet50 ran on random weights" in line for line in lines)
    assert "people: not counted, faces: 1" in lines[1]
    image = cv2.imread(str(drawing), cv2.IMREAD_COLOR_RGB)
    assert image is not None and image.shape == (512, 512, 3)
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
    assert unchanged.mean() > 0.8  # the rest is the photo (JPEG-compressed)


def test_analyze_errors_are_one_line(gateway: Gateway, photo_server: str, tmp_path: Path) -> None:
    run = _analyze(gateway, f"{photo_server}/notes.txt")
    assert run.returncode == 1 and run.stdout == ""
    assert "The gateway answered 415, unsupported_image: " in run.stderr
    assert "Traceback" not in run.stderr
    missing = _analyze(gateway, str(tmp_path / "nope.jpg"))
    assert missing.returncode == 1 and "Cannot read" in missing.stderr
