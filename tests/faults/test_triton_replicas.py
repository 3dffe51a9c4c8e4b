"""Two Tritons behind one gateway, as operators run them here: `picmetric triton --triton-host
127.0.0.2` and `--triton-host 127.0.0.3` (each with its supervisor), one `picmetric gateway`
with the target `ipv4:127.0.0.2:P,127.0.0.3:Q`. Analyses are spread over both (each Triton's
own statistics are the oracle); a stub killed on one is reloaded on that one alone; a Triton
killed with -9 under load costs no 4xx or hang, the other takes the work, and the restarted one
gets work again without a gateway restart. The session's converted repository is shared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.triton_admin import new_admin_key
from gateway.main import create_app
from gateway.settings import Settings
from gateway.triton.replicas import RESOLVE_S
from tests.utils.load import Load
from tests.utils.ports import free_port
from tests.utils.processes import processes, stubs_of
from tests.utils.services import gateway_process, ops_url, wait_until
from tests.utils.triton_stats import settled

pytestmark = pytest.mark.integration

HOSTS = ("127.0.0.2", "127.0.0.3")
ANALYSES = 20
START_S = 300.0  # two Tritons loading every model at once on 2 busy cores
REPAIR_S = 60.0
SHIFT_S = 5.0  # after a kill, within this every analysis is served by the other Triton
BACK_S = 60.0  # a restarted Triton gets work again within this
REQUEST_TIMEOUT_S = 30.0
CLIENTS = 2


@dataclass
class Replica:
    """A `picmetric triton` process (its supervisor restarts tritonserver) on one address."""

    host: str
    http: int
    grpc: int
    metrics: int
    launcher: subprocess.Popen[bytes]
    log: Path

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc}"

    def ready(self) -> bool:
        try:
            url = f"http://{self.host}:{self.http}/v2/health/ready"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def server_pid(self) -> int | None:
        """The tritonserver that the launcher runs now."""
        for process in processes():
            if process.parent == self.launcher.pid and "bin/tritonserver" in process.command:
                return process.pid
        return None

    def stub_pids(self, model: str) -> set[int]:
        pid = self.server_pid()
        assert pid is not None
        return {p.pid for p in stubs_of(pid) if f"/{model}/1/model." in p.command}

    def inferences(self, model: str = "resnet50", settle: bool = True) -> int:
        """The model's inference count in this Triton's own statistics (0 when unreachable);
        under load (`settle=False`) as read, since it never settles."""

        def read() -> int:
            url = f"http://{self.host}:{self.http}/v2/models/{model}/stats"
            try:
                stats = httpx.get(url, timeout=5).json()["model_stats"]
            except (httpx.TransportError, KeyError, ValueError):
                return 0
            return sum(int(entry.get("inference_count", 0)) for entry in stats)

        return settled(read) if settle else read()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="module")
def admin_key() -> str:
    return new_admin_key()  # the gateway has one key for every replica


@pytest.fixture(scope="module")
def replicas(model_repository: Path, folder: Path, admin_key: str) -> Iterator[list[Replica]]:
    started = []
    env = {**os.environ, "PICMETRIC_TRITON_ADMIN_KEY": admin_key}
    try:
        for host in HOSTS:
            http, grpc, metrics = free_port(), free_port(), free_port()
            log = folder / f"triton-{host}.log"
            command = [
                *(sys.executable, "-m", "picmetric", "triton", "--triton-host", host),
                *("--repository", str(model_repository), "--http-port", str(http)),
                *("--grpc-port", str(grpc), "--metrics-port", str(metrics)),
            ]
            with log.open("wb") as out:
                launcher = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            started.append(Replica(host, http, grpc, metrics, launcher, log))
        for replica in started:
            wait_until(replica.ready, START_S, f"Triton on {replica.host}", replica.log)
        yield started
    finally:
        for replica in started:
            replica.launcher.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.launcher.wait(60)
            except subprocess.TimeoutExpired:
                replica.launcher.kill()
                replica.launcher.wait()


@pytest.fixture(scope="module")
def gateway(
    replicas: list[Replica], model_repository: Path, folder: Path, admin_key: str
) -> Iterator[str]:
    env = {
        "PICMETRIC_TRITON_GRPC_URL": "ipv4:" + ",".join(r.grpc_address for r in replicas),
        "PICMETRIC_TRITON_ADMIN_KEY": admin_key,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{folder / 'analyses.db'}",
        "PYTHONUNBUFFERED": "1",  # the tests read its log as it goes
    }
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


@pytest.fixture(scope="module")
def jpeg(photos: dict[str, np.ndarray]) -> bytes:
    """A 320 px wide JPEG: the load is requests, not pixels."""
    photo = photos["chelsea"]
    small = cv2.resize(photo, (320, photo.shape[0] * 320 // photo.shape[1]))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


_thresholds = iter(range(1_000_000))


def replicas_gauge(gateway: str, state: str) -> float | None:
    """picmetric_triton_replicas{state} from the gateway's /metrics."""
    sample = f'picmetric_triton_replicas{{state="{state}"}} '
    for line in httpx.get(f"{ops_url(gateway)}/metrics", timeout=10).text.splitlines():
        if line.startswith(sample):
            return float(line.split()[-1])
    return None


def analyze(client: httpx.Client, jpeg: bytes) -> httpx.Response:
    """One uncached resnet50 analysis (each threshold differs, so the store has no answer)."""
    return client.post(
        "/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"models": "resnet50", "threshold": f"{0.1 + next(_thresholds) * 1e-6:.6f}"},
    )


def test_replicas_each_serve_a_share_of_the_analyses(
    gateway: str, replicas: list[Replica], jpeg: bytes
) -> None:
    ready = httpx.get(f"{ops_url(gateway)}/readyz", timeout=REQUEST_TIMEOUT_S)
    assert ready.status_code == 200, ready.text
    reported = ready.json()["replicas"]
    assert [r["address"] for r in reported] == [r.grpc_address for r in replicas]
    assert all(r["live"] and r["in_rotation"] and all(r["models"].values()) for r in reported)
    before = [r.inferences() for r in replicas]
    with httpx.Client(base_url=gateway, timeout=REQUEST_TIMEOUT_S) as client:
        statuses = [analyze(client, jpeg).status_code for _ in range(ANALYSES)]
    assert statuses == [200] * ANALYSES
    shares = [r.inferences() - b for r, b in zip(replicas, before, strict=True)]
    assert sum(shares) == ANALYSES and min(shares) >= ANALYSES // 4, shares
    print(f"\n{ANALYSES} analyses over two Tritons: {shares[0]} and {shares[1]} inferences")


def test_a_dead_stub_is_reloaded_on_its_replica_only(
    gateway: str, replicas: list[Replica], jpeg: bytes, folder: Path
) -> None:
    sick, well = replicas
    dead, well_stubs = sick.stub_pids("resnet50"), well.stub_pids("resnet50")
    assert dead and well_stubs
    for pid in dead:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=gateway, timeout=REQUEST_TIMEOUT_S) as client:

        def reloaded() -> bool:
            statuses[analyze(client, jpeg).status_code] += 1
            stubs = sick.stub_pids("resnet50")
            return bool(stubs) and not stubs & dead and sick.ready()

        wait_until(
            reloaded, REPAIR_S, "resnet50's reload on the sick replica", folder / "gateway.log"
        )
        repaired = time.monotonic() - killed
        before = sick.inferences()
        after = [analyze(client, jpeg).status_code for _ in range(6)]
    assert set(statuses) <= {200, 503}, statuses  # a dead stub is never the client's fault
    assert after == [200] * 6 and sick.inferences() > before  # the sick one serves again
    assert well.stub_pids("resnet50") == well_stubs  # the other replica was left alone
    log = (folder / "gateway.log").read_text()
    assert f"reloading it through Triton at {sick.grpc_address}" in log
    assert f"through Triton at {well.grpc_address}" not in log
    print(
        f"\nresnet50's stub killed on {sick.host}: reloaded there after {repaired:.1f} s; "
        f"answers meanwhile {dict(statuses)}"
    )


def test_a_replica_added_to_the_dns_answer_gets_work_within_a_minute(
    replicas: list[Replica],
    model_repository: Path,
    admin_key: str,
    jpeg: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway in this process on `dns:///triton-replicas.test:8001`, whose getaddrinfo is
    replaced by an answer the test changes (only that: the re-resolution every RESOLVE_S is the
    gateway's own): the first Triton alone, then both, as a headless Service after a scale-up."""
    first, added = replicas
    answer = [first.grpc_address]

    async def resolver(name: str, port: int) -> list[str]:
        assert (name, port) == ("triton-replicas.test", 8001)
        return list(answer)

    monkeypatch.setattr("gateway.triton.replicas.resolve", resolver)
    settings = Settings(
        triton_grpc_url="dns:///triton-replicas.test:8001",
        triton_admin_key=admin_key,
        model_repository=model_repository,
        database_url=f"sqlite:///{tmp_path / 'analyses.db'}",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        before = added.inferences()
        statuses = [analyze(client, jpeg).status_code for _ in range(4)]
        assert statuses == [200] * 4 and added.inferences() == before
        answer.append(added.grpc_address)
        changed = time.monotonic()
        wait_until(
            lambda: (
                analyze(client, jpeg).status_code == 200 and added.inferences(settle=False) > before
            ),
            RESOLVE_S + 30,
            "work on the Triton added to the DNS answer",
        )
        joined = time.monotonic() - changed
    assert joined < 60
    print(
        f"\na Triton added to the DNS answer got work in {joined:.1f} s (RESOLVE_S {RESOLVE_S:g})"
    )


def test_kill_9_of_one_replica_under_load_moves_the_work_and_it_comes_back(
    gateway: str, replicas: list[Replica], jpeg: bytes, folder: Path
) -> None:
    killed_one, other = replicas
    old_pid = killed_one.server_pid()
    assert old_pid is not None
    with Load(gateway, jpeg, CLIENTS, REQUEST_TIMEOUT_S, models="resnet50") as load:
        time.sleep(2.0)
        os.kill(old_pid, signal.SIGKILL)
        killed = time.monotonic()
        other_before = other.inferences(settle=False)
        wait_until(lambda: replicas_gauge(gateway, "out") == 1, SHIFT_S, "the replica's exit")
        ready = httpx.get(f"{ops_url(gateway)}/readyz", timeout=REQUEST_TIMEOUT_S)
        assert ready.status_code == 200, ready.text  # the other serves every model
        assert [(r["live"], r["in_rotation"]) for r in ready.json()["replicas"]] == [
            (False, False),
            (True, True),
        ]
        wait_until(
            lambda: killed_one.server_pid() not in (None, old_pid) and killed_one.ready(),
            START_S,
            "the killed Triton's restart by its launcher",
            killed_one.log,
        )
        back = time.monotonic()
        other_meanwhile = other.inferences(settle=False) - other_before
        back_after = wait_until(
            lambda: killed_one.inferences(settle=False) > 0, BACK_S, "work on the restarted Triton"
        )
        wait_until(lambda: replicas_gauge(gateway, "in_rotation") == 2, BACK_S, "its return")
        time.sleep(1.0)
    answers = load.answers
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 503}, statuses  # no 4xx, no hang
    shifted = [a for a in answers if killed + SHIFT_S <= a.sent and a.received <= back]
    assert shifted and all(a.status == 200 for a in shifted), Counter(a.status for a in shifted)
    assert other_meanwhile >= len(shifted)  # the other Triton did that work
    log = (folder / "gateway.log").read_text()
    assert f"Triton {killed_one.grpc_address} did not answer 3 calls in a row" in log
    assert f"Triton {killed_one.grpc_address} answers again; back in rotation" in log
    print(
        f"\nkill -9 of the Triton on {killed_one.host} under {CLIENTS} clients: answers "
        f"{dict(statuses)}; {len(shifted)} analyses from {SHIFT_S:.0f} s after the kill until its "
        f"restart ({back - killed:.1f} s) all served by {other.host}; work on the restarted one "
        f"{back_after:.1f} s after it was ready, no gateway restart"
    )
