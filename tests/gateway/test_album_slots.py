"""How a batch holds the process's analysis slots (gateway.album.analyze_album), with the
analysis of one photo replaced by a stand-in that waits: no Triton, no fetch."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import album
from gateway.admission import AdmissionLimiter
from gateway.analysis import AnalysisRequest
from gateway.errors import Overloaded
from gateway.results import Options
from gateway.tenancy import ANONYMOUS


def _request(url: str) -> AnalysisRequest:
    return AnalysisRequest("url", url, None, Options(threshold=0.2, max_results=5))


class Recorder:
    """Stands in for one photo's analysis: records the slots in use while photos run."""

    def __init__(self, limiter: AdmissionLimiter) -> None:
        self.limiter = limiter
        self.running = 0
        self.most_running = 0
        self.most_in_flight = 0
        self.started: list[str] = []

    async def __call__(
        self, index: int, request: AnalysisRequest, services: Any, owner: str
    ) -> Any:
        self.started.append(request.source)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.most_in_flight = max(self.most_in_flight, self.limiter.in_flight)
        assert self.running <= self.limiter.in_flight, "a photo runs without a slot"
        await asyncio.sleep(0.01)
        self.running -= 1
        return album.BatchItem(index=index, error=album.ErrorBody(errortype="x", message="y"))


def _run(limiter: AdmissionLimiter, urls: list[str], monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(limiter)
    monkeypatch.setattr(album, "_one", recorder)
    services: Any = SimpleNamespace(admission=limiter)
    answer = asyncio.run(album.analyze_album([_request(u) for u in urls], services, ANONYMOUS))
    assert [item.index for item in answer.results] == list(range(len(urls)))
    return recorder


def test_batch_runs_at_most_the_free_slots_and_gives_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = AdmissionLimiter(4)
    recorder = _run(limiter, [f"http://x.test/{i}.jpg" for i in range(16)], monkeypatch)
    assert recorder.most_running == 4 and recorder.most_in_flight == 4
    assert limiter.in_flight == 0


def test_batch_starts_on_the_one_free_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = AdmissionLimiter(3)
    with limiter.admit(2):  # other requests hold two
        recorder = _run(limiter, [f"http://x.test/{i}.jpg" for i in range(5)], monkeypatch)
        assert recorder.most_running == 1 and limiter.in_flight == 2
    assert limiter.in_flight == 0


def test_batch_with_no_free_slot_is_overloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = AdmissionLimiter(1)
    with limiter.admit(), pytest.raises(Overloaded):
        _run(limiter, ["http://x.test/a.jpg"], monkeypatch)
    assert limiter.in_flight == 0


def test_batch_analyses_the_same_url_once(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = AdmissionLimiter(4)
    urls = ["http://x.test/a.jpg", "http://x.test/b.jpg", "http://x.test/a.jpg"]
    recorder = _run(limiter, urls, monkeypatch)
    assert sorted(recorder.started) == ["http://x.test/a.jpg", "http://x.test/b.jpg"]
