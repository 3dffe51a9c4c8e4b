"""Analysis slots are for compute, not for waiting (issue 27, row 5), against the real gateway
under uvicorn, a real Triton and an image server on loopback whose answers trickle: a request
takes a slot only once its photo's bytes are in hand, each key runs at most
PICMETRIC_MAX_FETCHES_PER_KEY fetches at once, and a batch fetches and analyses each URL once
whatever its spelling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import FRESH
from tests.utils.hostile import Upstream, hostile_upstream
from tests.utils.services import gateway_env, gateway_process
from tests.utils.triton_stats import inference_count

pytestmark = pytest.mark.integration

ALICE, BOB = "alice-fetch-key-0123456789", "bob-fetch-key-9876543210"
SLOTS = 2
FETCHES_PER_KEY = 4
FETCH_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Target:
    url: str
    upstream_url: str
    upstream: Upstream
    photo: bytes


@pytest.fixture(scope="module")
def target(
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fetch-slots")
    photo = cv2.imencode(".jpg", cv2.cvtColor(photos["chelsea"], cv2.COLOR_RGB2BGR))[1].tobytes()
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'analyses.db'}",
        api_keys=f"{ALICE},{BOB}",
        allow_private_urls="true",
        max_analyses_in_flight=str(SLOTS),
        max_fetches_per_key=str(FETCHES_PER_KEY),
        fetch_timeout_s=str(FETCH_TIMEOUT_S),
        fetch_connect_timeout_s="1",
    )
    with hostile_upstream(photo) as (upstream_url, upstream):
        with gateway_process(env, folder / "gateway.log") as url:
            yield Target(url, upstream_url, upstream, photo)


def _post(target: Target, key: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"X-API-Key": key, **FRESH}
    return httpx.post(f"{target.url}{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_a_trickling_batch_holds_its_keys_fetches_and_no_analysis_slot(target: Target) -> None:
    """Alice's batch of 16 URLs that trickle holds her FETCHES_PER_KEY fetches for four fetch
    deadlines, and no analysis slot: meanwhile Bob's upload and Bob's URL are analysed, Alice's
    next URL is refused 429 naming the setting, and /healthz answers at once."""
    urls = [f"{target.upstream_url}/trickle-{i}.jpg" for i in range(16)]
    answers: list[httpx.Response] = []
    batch = threading.Thread(
        target=lambda: answers.append(_post(target, ALICE, "/v1/batch", json={"urls": urls}))
    )
    started = time.monotonic()
    batch.start()
    time.sleep(0.5)  # the batch's fetches are trickling
    refused = _post(target, ALICE, "/v1/analyze", json={"url": f"{target.upstream_url}/photo.jpg"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["errortype"] == "too_many_fetches"
    assert "PICMETRIC_MAX_FETCHES_PER_KEY" in refused.json()["message"]
    assert "Retry-After" in refused.headers
    healthz = time.perf_counter()
    assert httpx.get(f"{target.url}/healthz", timeout=0.5).status_code == 200
    assert time.perf_counter() - healthz < 0.5
    files = {"file": ("c.jpg", target.photo)}
    upload = _post(target, BOB, "/v1/analyze", files=files, data={"models": "mtcnn"})
    assert upload.status_code == 200 and upload.json()["cached"] is False, upload.text
    by_url = {"url": f"{target.upstream_url}/photo-bob.jpg", "models": ["resnet50"]}
    assert _post(target, BOB, "/v1/analyze", json=by_url).status_code == 200
    assert batch.is_alive(), "all of that while the batch still fetched"
    batch.join()
    assert answers and answers[0].status_code == 200, answers
    results = answers[0].json()["results"]
    assert [item["error"]["errortype"] for item in results] == ["fetch_timeout"] * 16
    assert time.monotonic() - started < FETCH_TIMEOUT_S * 16 / FETCHES_PER_KEY + 10


def test_a_batch_fetches_and_analyses_16_spellings_of_one_url_once(
    target: Target, triton: TritonServer
) -> None:
    """Scheme and host case, an explicit port, fragments, escaped unreserved characters and dot
    segments: one fetch, one inference, and one entry per URL sent, each the same analysis."""
    port = urlsplit(target.upstream_url).port
    base = f"localhost:{port}"
    spellings = [
        f"http://{base}/photo-spell.jpg",
        f"HTTP://{base}/photo-spell.jpg",
        f"http://LOCALHOST:{port}/photo-spell.jpg",
        f"hTTp://LocalHost:{port}/photo-spell.jpg",
        f"http://{base}/photo-spell.jpg#one",
        f"http://{base}/photo-spell.jpg#two",
        f"http://{base}/photo-spell.jpg#",
        f"http://{base}/%70hoto-spell.jpg",
        f"http://{base}/photo%2Dspell.jpg",
        f"http://{base}/photo-spell%2ejpg",
        f"http://{base}/./photo-spell.jpg",
        f"http://{base}/a/../photo-spell.jpg",
        f"http://{base}/a/b/../../photo-spell.jpg",
        f"http://{base}/%61/../photo-spell.jpg#x",
        f"HTTP://LOCALHOST:{port}/./%70hoto-spell.jpg#y",
        f"http://{base}/a/./../photo-spell.jpg",
    ]
    inferences = inference_count(triton.grpc_url, "resnet50")
    answer = _post(target, ALICE, "/v1/batch", json={"urls": spellings, "models": ["resnet50"]})
    assert answer.status_code == 200, answer.text
    fetched = sum(hits for path, hits in target.upstream.hits.items() if "spell" in path)
    assert fetched == 1
    results = answer.json()["results"]
    assert [item["index"] for item in results] == list(range(16))
    assert len({item["analysis"]["id"] for item in results}) == 1
    assert inference_count(triton.grpc_url, "resnet50") == inferences + 1
    other_query = [f"http://{base}/photo-spell.jpg?v=1", f"http://{base}/photo-spell.jpg?v=2"]
    answer = _post(target, ALICE, "/v1/batch", json={"urls": other_query, "models": ["resnet50"]})
    assert answer.status_code == 200, answer.text
    assert sum(hits for path, hits in target.upstream.hits.items() if "spell" in path) == 3
