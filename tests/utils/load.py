"""A bounded load on a gateway for fault tests: a few client threads posting a photo to
/v1/analyze in a loop until told to stop, each request with a threshold of its own so the
results store never answers; every answer is kept."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the request left
    seconds: float
    status: int | None  # None: no answer (timeout or connection error)
    errortype: str | None = None
    retry_after: str | None = None
    error: str = ""

    @property
    def received(self) -> float:
        return self.sent + self.seconds


class Load:
    """`clients` clients; one that gets anything but a 200 waits 0.2 s, as a client honouring a
    short Retry-After would. `models`: the models each analysis asks for (None: every one)."""

    def __init__(
        self,
        url: str,
        jpeg: bytes,
        clients: int,
        timeout_s: float,
        models: str | None = None,
    ) -> None:
        self.url, self.jpeg, self.timeout_s = url, jpeg, timeout_s
        self.form = {} if models is None else {"models": models}
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thresholds = itertools.count()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                threshold = 0.2 + next(self._thresholds) / 1e5
                sent = time.monotonic()
                try:
                    answer = client.post(
                        "/v1/analyze",
                        files={"file": ("photo.jpg", self.jpeg, "image/jpeg")},
                        data={**self.form, "threshold": f"{threshold:.5f}"},
                    )
                except httpx.HTTPError as exc:
                    seconds = time.monotonic() - sent
                    self.answers.append(Answer(sent, seconds, None, error=repr(exc)))
                    time.sleep(0.2)
                    continue
                body = answer.json() if answer.content else {}
                self.answers.append(
                    Answer(
                        sent,
                        time.monotonic() - sent,
                        answer.status_code,
                        body.get("errortype"),
                        answer.headers.get("Retry-After"),
                    )
                )
                if answer.status_code != 200:
                    time.sleep(0.2)

    def first_success_sent_after(self, moment: float) -> Answer | None:
        served = [a for a in list(self.answers) if a.status == 200 and a.sent > moment]
        return min(served, key=lambda a: a.received, default=None)
