"""How a batch holds the process's analysis slots and its key's fetches
(gateway.pipeline.album.analyze_album), with the fetch and the analysis of one photo replaced by
stand-ins that wait: no Triton, no upstream."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.admission import AdmissionLimiter, FetchLimiter
from gateway.errors import Overloaded, TooManyFetches
from gateway.pipeline import album
from gateway.pipeline.request import AnalysisRequest
from gateway.results import Options
from gateway.tenancy import ANONYMOUS


def _request(url: str) -> AnalysisRequest:
    return AnalysisRequest("url", url, None, Options(threshold=0.2, max_results=5))


class Recorder:
    """Stands in for one photo's fetch and analysis: records the slots in use while photos run
    and the fetches in flight."""

    def __init__(self, limiter: AdmissionLimiter, fetches: FetchLimiter, fetch_s: float) -> None:
        self.limiter = limiter
        self.fetches = fetches
        self.fetch_s = fetch_s
        self.running = 0
        self.most_running = 0
        self.most_in_flight = 0
        self.fetching = 0
        self.most_fetching = 0
        self.slots_while_fetching = 0
        self.fetched: list[str] = []
        self.started: list[str] = []

    async def fetch(self, request: AnalysisRequest, services: Any, owner: str) -> AnalysisRequest:
        self.fetched.append(request.source)
        self.fetching += 1
        self.most_fetching = max(self.most_fetching, self.fetching)
        assert self.fetching <= self.fetches.in_flight[owner], "a fetch runs without a permit"
        self.slots_while_fetching = max(self.slots_while_fetching, self.limiter.in_flight)
        await asyncio.sleep(self.fetch_s)
        self.fetching -= 1
        return AnalysisRequest(request.source_kind, request.source, None, request.options, b"x")

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


def _run(
    limiter: AdmissionLimiter,
    urls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    fetches: FetchLimiter | None = None,
    fetch_s: float = 0.0,
) -> Recorder:
    fetches = fetches or FetchLimiter(8)
    recorder = Recorder(limiter, fetches, fetch_s)
    monkeypatch.setattr(album, "_one", recorder)
    monkeypatch.setattr(album, "fetched", recorder.fetch)
    services: Any = SimpleNamespace(admission=limiter, fetches=fetches)
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
    assert sorted(recorder.fetched) == ["http://x.test/a.jpg", "http://x.test/b.jpg"]


def test_batch_holds_no_slot_while_it_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow fetches hold the key's fetches, at most its cap at once, and no analysis slot."""
    limiter, fetches = AdmissionLimiter(2), FetchLimiter(3)
    urls = [f"http://x.test/{i}.jpg" for i in range(10)]
    recorder = _run(limiter, urls, monkeypatch, fetches, fetch_s=0.05)
    assert recorder.slots_while_fetching <= 2 and recorder.most_fetching == 3
    assert len(recorder.started) == 10 and limiter.in_flight == 0 and not fetches.in_flight


def test_batch_without_a_free_fetch_is_too_many_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter, fetches = AdmissionLimiter(4), FetchLimiter(1)
    with fetches.admit(ANONYMOUS), pytest.raises(TooManyFetches, match="MAX_FETCHES_PER_KEY"):
        _run(limiter, ["http://x.test/a.jpg"], monkeypatch, fetches)
    assert not fetches.in_flight and limiter.in_flight == 0
