"""Weight downloads against a real HTTP server on 127.0.0.1 serving a generated weights file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from conversion import resnet50
from conversion.weights import CanonicalWeights, WeightsError, download, file_digest
from picmetric.cli import build_parser, run_convert
from tests.conftest import TEST_SEED
from tests.utils.http_server import serve_directory
from tests.utils.ports import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder with a generated 3 MiB file, served over HTTP; yields (URL of the file, file)."""
    root = tmp_path / "www"
    root.mkdir()
    payload = root / "weights.bin"
    payload.write_bytes(bytes(range(256)) * 12_288)
    with serve_directory(root) as (base, _):
        yield f"{base}/weights.bin", payload


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads go to a cache of their own, not the developer's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "picmetric"


def test_download_right_hash_enters_cache(served: tuple[str, Path], tmp_path: Path) -> None:
    url, payload = served
    dest = tmp_path / "dl" / "weights.bin"
    download(url, f"sha256:{file_digest(payload)}", dest)
    assert dest.read_bytes() == payload.read_bytes()
    assert not list(dest.parent.glob("*.part"))


def test_download_wrong_hash_fails_and_leaves_nothing(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    dest = tmp_path / "dl" / "weights.bin"
    with pytest.raises(WeightsError, match="Checksum mismatch.*discarded"):
        download(url, "sha256:" + "0" * 64, dest)
    assert list(dest.parent.iterdir()) == []


def test_download_resumes_from_partial_file(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    payload = root / "weights.bin"
    payload.write_bytes(bytes(range(256)) * 4096)
    dest = tmp_path / "dl" / "weights.bin"
    dest.parent.mkdir()
    (dest.parent / "weights.bin.part").write_bytes(payload.read_bytes()[:1000])
    with serve_directory(root) as (base, requests):
        download(f"{base}/weights.bin", f"sha256:{file_digest(payload)}", dest)
    assert dest.read_bytes() == payload.read_bytes()
    assert requests[-1]["Range"] == "bytes=1000-"


def test_download_http_404_is_a_clear_error(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    with pytest.raises(WeightsError, match="HTTP 404"):
        download(url.replace("weights.bin", "missing.bin"), None, tmp_path / "x.bin")


def test_auto_without_network_falls_back_to_random_loudly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/resnet50.h5"
    monkeypatch.setattr(resnet50, "CANONICAL", CanonicalWeights(unreachable, "md5:" + "0" * 32))
    monkeypatch.setattr(resnet50, "write_random_weights", lambda path, seed: path.write_bytes(b"x"))
    with caplog.at_level(logging.WARNING):
        weights = resnet50.resolve("auto", seed=3)
    assert weights.kind == "random" and weights.seed == 3
    assert "RANDOM weights" in caplog.text and unreachable in caplog.text


@pytest.mark.slow
def test_convert_resnet50_from_url_checks_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversion downloads a generated Keras weights file from a local server: the right
    hash converts (provenance says `file`), a wrong one fails with a clear message."""
    monkeypatch.delenv("XDG_CACHE_HOME")  # reuse the shared cache for the random weights file
    weights = resnet50.resolve("random", TEST_SEED)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "www"
    root.mkdir()
    (root / weights.path.name).write_bytes(weights.path.read_bytes())
    repository = tmp_path / "repository"
    with serve_directory(root) as (base, _):
        url = f"{base}/{weights.path.name}"
        bad = ["convert", "resnet50", "--weights", url, "--weights-hash", "sha256:" + "1" * 64]
        with pytest.raises(WeightsError, match="Checksum mismatch"):
            run_convert(build_parser().parse_args([*bad, "--repository", str(repository)]))
        assert not (repository / "resnet50" / "1" / "model.onnx").exists()
        good = [*bad[:-1], f"sha256:{weights.sha256}", "--repository", str(repository)]
        run_convert(build_parser().parse_args(good))
    provenance = json.loads((repository / "resnet50" / "1" / "provenance.json").read_text())
    assert provenance["weights"] == {"kind": "file", "source": url, "sha256": weights.sha256}
    downloads = tmp_path / "cache" / "picmetric" / "downloads"
    assert [p.name.endswith(weights.path.name) for p in downloads.iterdir()] == [True]


def test_a_cached_download_is_checked_against_the_hash_asked_for(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, payload = served
    dest = tmp_path / "dl" / "weights.bin"
    download(url, None, dest)
    with pytest.raises(WeightsError, match="Checksum mismatch"):
        download(url, "sha256:" + "0" * 64, dest)
    assert download(url, f"sha256:{file_digest(payload)}", dest) == dest


def test_a_complete_partial_file_is_not_stuck(served: tuple[str, Path], tmp_path: Path) -> None:
    """A run killed after the last byte but before the rename leaves a full .part; the server
    answers 416 to its range request, and the download starts over."""
    _, payload = served
    dest = tmp_path / "dl" / "weights.bin"
    dest.parent.mkdir()
    (dest.parent / "weights.bin.part").write_bytes(payload.read_bytes())
    with serve_directory(payload.parent) as (base, requests):
        download(f"{base}/weights.bin", f"sha256:{file_digest(payload)}", dest)
    assert dest.read_bytes() == payload.read_bytes()
    assert [r.get("Range") for r in requests] == [f"bytes={payload.stat().st_size}-", None]
