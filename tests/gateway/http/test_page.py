"""The try-it page at `/` in a real headless Chromium (tests/utils/browser.py) against a real
gateway with API keys on and a real Triton: upload a photo, read back what the page drew and
compare it with the JSON answer the page received; a bad URL shows the gateway's message."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from picmetric.triton_server import TritonServer
from tests.gateway.jobs.conftest import JobsEnv, wait_for_job, worker_process
from tests.utils.browser import headless_chromium
from tests.utils.phone_formats import encode
from tests.utils.redis import redis_servers
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

API_KEY = "page-test-key"
# The gateway traces (its spans written to its log: no trace store needed) and links them here.
TRACE_URL = "http://traces.example/trace/{trace_id}"
WAIT_S = 40  # one analysis on CPU Triton takes a few seconds; the test stays well under a minute
FACE_STROKE = (0x1D, 0x4E, 0xD8)  # --face in page.css
LANDMARK_FILL = (0xFA, 0xCC, 0x15)  # --landmark in page.css
# The overlay's geometry, in the page's CSS pixels (device scale factor 1).
GEOMETRY = """
const photo = document.getElementById("photo").getBoundingClientRect();
const box = (e) => {
  const r = e.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom];
};
return {
  photo: [photo.left, photo.top, photo.width, photo.height],
  faces: [...document.querySelectorAll("#overlay rect.face")].map((e) => ({
    x: +e.getAttribute("x"), y: +e.getAttribute("y"),
    width: +e.getAttribute("width"), height: +e.getAttribute("height"), screen: box(e)})),
  landmarks: [...document.querySelectorAll("#overlay circle.landmark")].map((e) => ({
    name: e.dataset.name, face: +e.dataset.face,
    cx: +e.getAttribute("cx"), cy: +e.getAttribute("cy"), screen: box(e)})),
};
"""
# Each result list's indent against the widest number it can show, "100. " (max_results' most
# labels; YOLOv3's boxes on random weights), in the list's font: a wider marker is cut off.
MARKERS = """
const context = document.createElement("canvas").getContext("2d");
return ["labels", "faces", "objects"].map((id) => {
  const style = getComputedStyle(document.getElementById(id));
  context.font = style.font;
  return [id, context.measureText("100. ").width, parseFloat(style.paddingLeft)];
});
"""


@pytest.fixture(scope="module")
def page_gateway(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobsEnv]:
    """The gateway with API keys on (the page must work with them), SQLite, no S3 bucket, a
    Redis for bulk jobs (whose workers the tests start); it traces, and the page links each
    analysis to its trace."""
    folder = tmp_path_factory.mktemp("gateway-page")
    with redis_servers(appendonly=False) as redis:
        env = gateway_env(
            triton,
            model_repository,
            f"sqlite:///{folder / 'analyses.db'}",
            allow_private_urls="true",
            api_keys=API_KEY,
            trace_url_template=TRACE_URL,
            redis_url=redis.url,
            jobs_worker_concurrency="1",  # a job's progress lasts long enough to be seen
        )
        env["OTEL_TRACES_EXPORTER"] = "console"
        with gateway_process(env, folder / "gateway.log") as url:
            yield JobsEnv(url, env, redis, "", folder, {})


@pytest.fixture(scope="module")
def keyed_gateway(page_gateway: JobsEnv) -> str:
    return page_gateway.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        driver.set_page_load_timeout(WAIT_S)
        yield driver


def _open_with_key(browser: Chrome, base: str) -> None:
    """Load the page; when the key is not yet in the tab, see the 401 shown, then enter it."""
    browser.get(f"{base}/")
    wait = WebDriverWait(browser, WAIT_S)
    models = (By.CSS_SELECTOR, "#models-list input")
    wait.until(lambda d: d.find_elements(*models) or d.find_element(By.ID, "error").is_displayed())
    if browser.find_elements(*models):
        return
    error = browser.find_element(By.ID, "error").text
    refused = httpx.get(f"{base}/v1/models", timeout=30)
    assert refused.status_code == 401 and refused.json()["message"] in error
    assert "unauthorized" in error and "HTTP 401" in error
    key = browser.find_element(By.ID, "key-input")
    assert key.is_displayed(), "a refused key opens the API key field"
    key.send_keys(API_KEY, Keys.ENTER)
    wait.until(lambda d: d.find_elements(*models))
    assert not browser.find_element(By.ID, "error").is_displayed()


def _random_models(base: str) -> list[str]:
    models = httpx.get(f"{base}/v1/models", headers={"X-API-Key": API_KEY}, timeout=30).json()
    return [m["name"] for m in models if m["weights"]["kind"] == "random"]


def _pixel(screenshot: Image.Image, x: float, y: float) -> tuple[int, int, int]:
    red, green, blue = screenshot.getpixel((round(x), round(y)))[:3]  # type: ignore[index]
    return red, green, blue


def _near(color: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=True))


def _assert_face_box_on_screen(
    screenshot: Image.Image,
    drawn: dict[str, Any],
    box: dict[str, float],
    origin: tuple[float, float],
    scale: tuple[float, float],
) -> None:
    """The face box the page drew (`drawn`, its SVG rectangle's screen corners) lies where the
    answer's box falls on the photo shown at `origin` and `scale`, and shows in the face colour."""
    (left, top), (scale_x, scale_y) = origin, scale
    on_screen = [
        left + box["x_min"] * scale_x,
        top + box["y_min"] * scale_y,
        left + box["x_max"] * scale_x,
        top + box["y_max"] * scale_y,
    ]
    assert drawn["screen"] == pytest.approx(on_screen, abs=1.5)
    middle = (on_screen[1] + on_screen[3]) / 2
    for x in (on_screen[0], on_screen[2]):
        assert _near(_pixel(screenshot, x, middle), FACE_STROKE), "the face box is drawn"


WATERFALL = """
return [...document.querySelectorAll("#waterfall li")].map((e) => {
  const bar = e.querySelector(".bar").getBoundingClientRect();
  const track = e.querySelector(".track").getBoundingClientRect();
  return {step: e.dataset.step, ms: e.querySelector(".number").textContent,
          start: (bar.left - track.left) / track.width, width: bar.width / track.width};
});
"""


# The waterfall drawn again for an answer (arguments[1]) under a trace URL template (arguments[0]).
REDRAW = """
document.getElementById("waterfall").dataset.traceUrl = arguments[0];
showWaterfall(arguments[1]);
"""


def _assert_waterfall(browser: Chrome, answer: dict[str, Any]) -> None:
    """One bar per stage and model on one time axis: the fetch first, the decode after it, the
    quality figures and the preparation after the decode, the models after the preparation, each
    as long as its time; a link to the analysis's trace."""
    rows = {row["step"]: row for row in browser.execute_script(WATERFALL)}
    timings = answer["timings_ms"]
    models = {"ResNet50": "resnet50", "YOLOv3": "yolov3", "MTCNN": "mtcnn"}
    assert set(rows) == {"fetch", "decode", "quality", "preprocess", *models}
    runs = {run["name"]: run for run in answer["models"]}
    decoded = timings["fetch"] + timings["decode"]
    called = decoded + timings["preprocess"]
    expected = {
        "fetch": (0, timings["fetch"]),
        "decode": (timings["fetch"], timings["decode"]),
        "quality": (decoded, timings["quality"]),
        "preprocess": (decoded, timings["preprocess"]),
        **{title: (called, runs[name]["latency_ms"]) for title, name in models.items()},
    }
    end = max(timings["total"], *(start + ms for start, ms in expected.values()))
    for step, (start, ms) in expected.items():
        assert rows[step]["start"] == pytest.approx(start / end, abs=0.01), step
        assert rows[step]["width"] == pytest.approx(max(ms / end, 0.005), abs=0.01), step
        assert float(rows[step]["ms"].split()[0]) == pytest.approx(ms, abs=0.051), step
    link = browser.find_element(By.ID, "trace-link")
    assert link.is_displayed()
    assert link.get_attribute("href") == TRACE_URL.format(trace_id=answer["trace_id"])
    # No link without a trace store (PICMETRIC_TRACE_URL_TEMPLATE unset: the list's template
    # empty) or for an answer that was not traced (no trace_id); the page's own template after.
    untraced = {key: value for key, value in answer.items() if key != "trace_id"}
    for template, shown in (("", answer), (TRACE_URL, untraced)):
        browser.execute_script(REDRAW, template, shown)
        assert not browser.find_element(By.ID, "trace-link").is_displayed(), template
    browser.execute_script(REDRAW, TRACE_URL, answer)
    assert browser.find_element(By.ID, "trace-link").is_displayed()


def _save_artefact(png: bytes, tmp_path: Path, name: str) -> Path:
    """The screenshot in the test's tmp dir and, when PICMETRIC_TEST_ARTEFACTS names a folder,
    there too (CI keeps that folder)."""
    path = tmp_path / name
    path.write_bytes(png)
    folder = os.environ.get("PICMETRIC_TEST_ARTEFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
    return path


def test_page_draws_the_answer_on_the_uploaded_photo(
    browser: Chrome, keyed_gateway: str, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """Face box and landmarks drawn where the JSON says (SVG attributes in the photo's pixels,
    their place on screen within 1.5 CSS pixels, and the screenshot's colours there); the
    labels, counts, latencies and the random-weights warning shown."""
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR))
    _open_with_key(browser, keyed_gateway)
    random = _random_models(keyed_gateway)
    assert random, "the test models run on random weights (ResNet50, YOLOv3)"
    warning = browser.find_element(By.ID, "models-warning")
    assert warning.is_displayed() and "Random weights" in warning.text
    titles = {"resnet50": "ResNet50", "yolov3": "YOLOv3", "mtcnn": "MTCNN"}
    assert all(titles[name] in warning.text for name in random)

    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    browser.find_element(By.ID, "threshold-input").send_keys("0.6")
    browser.find_element(By.ID, "max-results-input").send_keys("5")
    browser.find_element(By.ID, "min-face-size-input").send_keys("5%")
    browser.find_element(By.ID, "analyze-button").click()
    WebDriverWait(browser, WAIT_S).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "busy"), "Done.")
    )
    assert not browser.find_element(By.ID, "error").is_displayed()
    raw = browser.find_element(By.ID, "raw-json").get_attribute("textContent")
    answer: dict[str, Any] = json.loads(raw or "null")
    assert answer["source"]["kind"] == "upload"
    options = {"threshold": 0.6, "max_results": 5, "min_face_size": "5%", "min_face_px": 25.6}
    assert answer["options"] == options  # 5 % of the 512-px short side
    assert (answer["image"]["width"], answer["image"]["height"]) == (512, 512)

    # The whole page in the window, so the screenshot shows it all and its pixels are the page's.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, int(height) + 40)
    browser.execute_script("window.scrollTo(0, 0)")
    geometry = browser.execute_script(GEOMETRY)
    png = browser.get_screenshot_as_png()
    _save_artefact(png, tmp_path, "try-it-page.png")
    screenshot = Image.open(io.BytesIO(png)).convert("RGB")

    left, top, shown_width, shown_height = geometry["photo"]
    scale_x = shown_width / answer["image"]["width"]
    scale_y = shown_height / answer["image"]["height"]
    faces = answer["results"]["mtcnn"]
    assert len(faces) == 1, "the astronaut has one face"
    assert len(geometry["faces"]) == 1
    drawn, face = geometry["faces"][0], faces[0]
    box = face["box"]
    width, height = box["x_max"] - box["x_min"], box["y_max"] - box["y_min"]
    drawn_box = [drawn["x"], drawn["y"], drawn["width"], drawn["height"]]
    assert drawn_box == pytest.approx([box["x_min"], box["y_min"], width, height])
    _assert_face_box_on_screen(screenshot, drawn, box, (left, top), (scale_x, scale_y))

    landmarks = {point["name"]: point for point in geometry["landmarks"]}
    assert set(landmarks) == set(face["keypoints"]) and len(geometry["landmarks"]) == 5
    for name, (x, y) in face["keypoints"].items():
        point = landmarks[name]
        assert (point["cx"], point["cy"]) == pytest.approx((x, y))
        screen_x = (point["screen"][0] + point["screen"][2]) / 2
        screen_y = (point["screen"][1] + point["screen"][3]) / 2
        assert (screen_x, screen_y) == pytest.approx(
            (left + x * scale_x, top + y * scale_y), abs=1.5
        )
        assert _near(_pixel(screenshot, screen_x, screen_y), LANDMARK_FILL), f"{name} is drawn"

    labels = browser.find_elements(By.CSS_SELECTOR, "#labels li.label .name")
    expected_labels = [found["label"] for found in answer["results"]["resnet50"]]
    assert 1 <= len(expected_labels) <= 5
    assert [label.text for label in labels] == expected_labels
    for name, widest, indent in browser.execute_script(MARKERS):
        assert widest <= indent, f"#{name}'s numbers are cut off ({widest} px in {indent} px)"
    objects = browser.find_elements(By.CSS_SELECTOR, "#overlay rect.object")
    assert len(objects) == len(answer["results"]["yolov3"])
    faces_count = browser.find_element(By.CSS_SELECTOR, '#summary dd[data-field="faces"]')
    assert faces_count.text == "1"
    for run in answer["models"]:
        latency = browser.find_element(
            By.CSS_SELECTOR, f'#models-table tr[data-model="{run["name"]}"] .latency'
        )
        # one decimal, as JavaScript's toFixed rounds it (429.25 -> 429.3, Python says 429.2)
        value, unit = latency.text.split()
        assert unit == "ms" and len(value.split(".")[1]) == 1
        assert float(value) == pytest.approx(run["latency_ms"], abs=0.051)
    _assert_waterfall(browser, answer)
    result_warning = browser.find_element(By.ID, "result-warning")
    assert result_warning.is_displayed()
    assert all(titles[name] in result_warning.text for name in random)
    assert "MTCNN" not in result_warning.text, "MTCNN's weights are the published ones"


def test_page_shows_a_heic_upload_upright_with_its_boxes(
    browser: Chrome, keyed_gateway: str, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """Chromium cannot show HEIC: the page shows the gateway's upright JPEG of it (/v1/annotate,
    answered from the store) at the answer's size, with the face box drawn where the JSON says.
    The HEIC stores the astronaut turned (irot, orientation 6), 400x512 as stored."""
    photo = tmp_path / "astronaut.heic"
    photo.write_bytes(encode(photos["astronaut"][:400], "HEIF", orientation=6, quality=90))
    _open_with_key(browser, keyed_gateway)
    yolo = browser.find_element(By.CSS_SELECTOR, '#models-list input[value="yolov3"]')
    if yolo.is_selected():
        yolo.click()  # without YOLOv3, people are "not counted", not 0
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    browser.find_element(By.ID, "analyze-button").click()
    WebDriverWait(browser, WAIT_S).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "busy"), "Done.")
    )
    raw = browser.find_element(By.ID, "raw-json").get_attribute("textContent")
    answer: dict[str, Any] = json.loads(raw or "null")
    assert (answer["image"]["width"], answer["image"]["height"]) == (512, 400)
    assert "upright JPEG" in browser.find_element(By.ID, "caption").text
    shown = browser.execute_script(
        "const p = document.getElementById('photo');"
        "return [p.src.slice(0, 5), p.naturalWidth, p.naturalHeight];"
    )
    assert shown == ["blob:", 512, 400]

    browser.execute_script("window.scrollTo(0, 0)")
    geometry = browser.execute_script(GEOMETRY)
    png = browser.get_screenshot_as_png()
    _save_artefact(png, tmp_path, "try-it-page-heic.png")
    screenshot = Image.open(io.BytesIO(png)).convert("RGB")
    left, top, shown_width, shown_height = geometry["photo"]
    (face,) = answer["results"]["mtcnn"]
    (drawn,) = geometry["faces"]
    box = face["box"]
    scale_x, scale_y = shown_width / 512, shown_height / 400
    _assert_face_box_on_screen(screenshot, drawn, box, (left, top), (scale_x, scale_y))
    # The face is in the upright photo's top half, where the astronaut's head is.
    assert box["y_max"] < 250
    assert answer["results"]["yolov3"] is None and answer["summary"]["people"] is None
    people = browser.find_element(By.CSS_SELECTOR, '#summary dd[data-field="people"]')
    assert people.text == "not counted"
    not_run = browser.find_element(By.CSS_SELECTOR, "#objects li.none")
    assert not_run.text == "not run"
    assert not_run.value_of_css_property("list-style-type") == "none"  # no "0." before it


def test_page_shows_the_gateways_error_for_a_bad_url(
    browser: Chrome, keyed_gateway: str, photo_server: str
) -> None:
    """An image URL the photo server does not have: the page shows the gateway's message and
    errortype, exactly as /v1/analyze answers them."""
    bad = f"{photo_server}/no-such-photo.jpg"
    direct = httpx.post(
        f"{keyed_gateway}/v1/analyze", json={"url": bad}, headers={"X-API-Key": API_KEY}, timeout=60
    )
    assert direct.status_code >= 400
    _open_with_key(browser, keyed_gateway)
    browser.find_element(By.ID, "url-input").send_keys(bad, Keys.ENTER)  # Enter submits the form
    error = WebDriverWait(browser, WAIT_S).until(
        expected_conditions.visibility_of_element_located((By.ID, "error"))
    )
    assert direct.json()["message"] in error.text
    assert direct.json()["errortype"] in error.text and f"HTTP {direct.status_code}" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_page_shows_the_gateways_error_for_a_face_size_without_its_unit(
    browser: Chrome, keyed_gateway: str, photo_server: str
) -> None:
    """The smallest face given as a bare number: the gateway's 422, naming min_face_size and
    its two spellings, shown on the page as /v1/analyze answers it."""
    url = f"{photo_server}/astronaut.jpg"
    body = {"url": url, "min_face_size": "40"}
    direct = httpx.post(
        f"{keyed_gateway}/v1/analyze", json=body, headers={"X-API-Key": API_KEY}, timeout=60
    )
    assert direct.status_code == 422
    assert "min_face_size" in direct.json()["message"] and "'40px'" in direct.json()["message"]
    _open_with_key(browser, keyed_gateway)
    browser.find_element(By.ID, "min-face-size-input").send_keys("40")
    browser.find_element(By.ID, "url-input").send_keys(url, Keys.ENTER)
    error = WebDriverWait(browser, WAIT_S).until(
        expected_conditions.visibility_of_element_located((By.ID, "error"))
    )
    assert direct.json()["message"] in error.text and "HTTP 422" in error.text


def test_page_with_no_model_ticked_asks_for_one(
    browser: Chrome, keyed_gateway: str, photo_server: str
) -> None:
    """Every model unticked: the page asks for one and sends nothing (without the field the
    gateway would run every model)."""
    _open_with_key(browser, keyed_gateway)
    boxes = browser.find_elements(By.CSS_SELECTOR, "#models-list input")
    assert boxes
    for box in boxes:
        if box.is_selected():
            box.click()
    browser.find_element(By.ID, "url-input").send_keys(f"{photo_server}/astronaut.jpg", Keys.ENTER)
    error = WebDriverWait(browser, WAIT_S).until(
        expected_conditions.visibility_of_element_located((By.ID, "error"))
    )
    assert "Choose at least one model." in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()


JOB_CELLS = """
return [...document.querySelectorAll("#jobs-table tbody tr")].map((row) => ({
  id: row.dataset.job, state: row.dataset.state,
  cells: Object.fromEntries([...row.cells].map((c) => [c.className.split(" ")[0], c.textContent])),
}));
"""


def _job_rows(browser: Chrome) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in browser.execute_script(JOB_CELLS)}


def _answered(client: httpx.Client, job_id: str) -> int:
    counts = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()["counts"]
    return int(counts["done"] + counts["skipped"] + counts["failed"])


def test_page_lists_the_keys_jobs_and_follows_their_progress(
    browser: Chrome, page_gateway: JobsEnv, photos: dict[str, np.ndarray], photo_server: str
) -> None:
    """A job submitted before the page opens is listed queued, 0 answered; once a worker runs it,
    the page (refreshing by itself, no reload) shows it running with photos/s and a time left,
    then done with the counts and rate GET /v1/jobs/{id} gives."""
    urls = [f"{photo_server}/{name}.{kind}" for name in sorted(photos) for kind in ("jpg", "png")]
    body = {"source": {"urls": urls}, "models": ["resnet50", "mtcnn"]}
    base = page_gateway.url
    with httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        job = client.post("/v1/jobs", json=body).raise_for_status().json()
        _open_with_key(browser, base)
        WebDriverWait(browser, WAIT_S).until(lambda d: job["id"] in _job_rows(d))
        queued = _job_rows(browser)[job["id"]]
        assert queued["state"] == "queued"
        assert queued["cells"]["answered"] == f"0 / {len(urls)}"
        assert (queued["cells"]["rate"], queued["cells"]["left"]) == ("—", "—")
        assert "unfinished" in browser.find_element(By.ID, "jobs-status").text

        seen: list[dict[str, Any]] = []

        def row_is(state: str) -> Callable[[Chrome], bool]:
            def check(driver: Chrome) -> bool:
                row = _job_rows(driver)[job["id"]]
                seen.append(row)
                answered = int(row["cells"]["answered"].split(" / ")[0])
                part_way = row["cells"]["rate"] != "—" and 0 < answered < len(urls)
                return bool(row["state"] == state and (state != "running" or part_way))

            return check

        with worker_process(page_gateway, "page") as worker:
            # The worker paused (SIGSTOP) once it has answered a photo, so that the page, which
            # refreshes every 2 s, sees the job part-way however fast the photos go.
            deadline = time.monotonic() + 60
            while _answered(client, job["id"]) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.process.send_signal(signal.SIGSTOP)
            try:
                assert _answered(client, job["id"]) < len(urls), "the job ended before the pause"
                WebDriverWait(browser, 30, poll_frequency=0.3).until(row_is("running"))
            finally:
                worker.process.send_signal(signal.SIGCONT)
            running = seen[-1]
            WebDriverWait(browser, 120, poll_frequency=0.3).until(row_is("done"))
            done = wait_for_job(client, job["id"], 10)
    assert running["cells"]["left"].endswith(" s")  # e.g. "12 s", "1 min 5 s"
    cells = seen[-1]["cells"]
    assert cells["answered"] == f"{len(urls)} / {len(urls)}" and cells["failed"] == "0"
    assert cells["rate"] == f"{done['photos_per_second']:.2f}" and cells["left"] == "—"
    assert browser.find_element(By.ID, "jobs-status").text == ""
