"""Fetching, verifying and caching weight files, and recording where weights came from."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from tqdm import tqdm

from core.paths import cache_dir

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class WeightsError(RuntimeError):
    """Weights could not be fetched, or the file is not the one that was asked for."""


@dataclass(frozen=True)
class CanonicalWeights:
    """The published weights of a network: where to download them and their published hash."""

    url: str
    digest: str  # "<algorithm>:<hex>", e.g. "md5:2cb9..." as Keras publishes it


@dataclass(frozen=True)
class Weights:
    """A weights file on disk and how it came to be."""

    path: Path
    kind: str  # "pretrained", "file" or "random"
    sha256: str
    source: str
    seed: int | None = None

    def provenance(self) -> dict[str, object]:
        record: dict[str, object] = {
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
        }
        if self.seed is not None:
            record["seed"] = self.seed
        return record

    def describe(self) -> str:
        if self.kind == "random":
            return f"random seed={self.seed}"
        return f"{self.kind} sha256={self.sha256[:12]}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_digest(path: Path, expected: str) -> None:
    algorithm, _, want = expected.partition(":")
    if not want:
        raise WeightsError(f"Hash '{expected}' must look like 'sha256:<hex>' or 'md5:<hex>'.")
    got = file_digest(path, algorithm)
    if got != want.lower():
        raise WeightsError(
            f"Checksum mismatch for {path.name}: expected {algorithm} {want}, got {got}. "
            "The download was discarded; check the URL and the expected hash."
        )


def download(url: str, expected: str | None, dest: Path) -> Path:
    """Download `url` to `dest` through `dest.part` (resumed when a previous try left one),
    verify `expected` ("algo:hex") and only then move it into place."""
    if dest.exists():
        if expected:
            _check_digest(dest, expected)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    log.info("Downloading %s", url)
    try:
        with httpx.stream(
            "GET", url, headers=headers, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True
        ) as response:
            if response.status_code == 416:  # the partial file is already complete
                response.close()
                part.unlink()
                return download(url, expected, dest)
            response.raise_for_status()
            if response.status_code != 206:
                offset = 0
            total = int(response.headers.get("Content-Length", 0)) + offset or None
            with (
                part.open("ab" if offset else "wb") as f,
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name) as bar,
            ):
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    f.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPStatusError as exc:
        raise WeightsError(f"Download of {url} failed: HTTP {exc.response.status_code}.") from exc
    if expected:
        try:
            _check_digest(part, expected)
        except WeightsError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


def _download_path(url: str) -> Path:
    name = Path(urlparse(url).path).name or "weights"
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return cache_dir() / "downloads" / f"{key}-{name}"


def _from_file(path: Path, canonical: CanonicalWeights, source: str) -> Weights:
    if not path.is_file():
        raise WeightsError(
            f"Weights file {path} does not exist; pass a path, a URL, 'auto' or 'random'."
        )
    algorithm, _, want = canonical.digest.partition(":")
    kind = "pretrained" if file_digest(path, algorithm) == want else "file"
    return Weights(path=path, kind=kind, sha256=file_digest(path), source=source)


def _generator_version() -> str:
    """A hash of the converter code (where random weights are made): any change there makes a
    new random file rather than reusing one an older generator wrote."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()[:8]


def _random(name: str, seed: int, suffix: str, make_random: Callable[[Path, int], None]) -> Weights:
    version = _generator_version()
    path = cache_dir() / "weights" / f"{name}-random-seed{seed}-{version}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
        log.info("Generating deterministic random weights for %s (seed %d)", name, seed)
        make_random(tmp, seed)
        os.replace(tmp, path)
        for older in path.parent.glob(f"{name}-random-seed{seed}-*{suffix}"):
            if older != path:  # written by an older generator: never used again
                older.unlink(missing_ok=True)
    return Weights(path=path, kind="random", sha256=file_digest(path), source="random", seed=seed)


def resolve_weights(
    spec: str,
    *,
    name: str,
    canonical: CanonicalWeights,
    seed: int,
    random_suffix: str,
    make_random: Callable[[Path, int], None],
    expected_hash: str | None = None,
) -> Weights:
    """Turn `--weights auto|random|PATH|URL` into a verified file on disk."""
    if spec == "random":
        return _random(name, seed, random_suffix, make_random)
    if spec == "auto":
        try:
            path = download(canonical.url, canonical.digest, _download_path(canonical.url))
        except httpx.TransportError as exc:
            log.warning(
                "\n%s\nWARNING: could not download the pretrained %s weights (%s).\n"
                "Falling back to RANDOM weights (seed %d): predictions will be meaningless.\n"
                "Use --weights PATH with a downloaded copy of %s for real results.\n%s",
                "!" * 78,
                name,
                exc,
                seed,
                canonical.url,
                "!" * 78,
            )
            return _random(name, seed, random_suffix, make_random)
        return _from_file(path, canonical, canonical.url)
    if urlparse(spec).scheme in ("http", "https"):
        digest = expected_hash or (canonical.digest if spec == canonical.url else None)
        try:
            path = download(spec, digest, _download_path(spec))
        except httpx.TransportError as exc:
            raise WeightsError(f"Could not download {spec}: {exc}") from exc
        return _from_file(path, canonical, spec)
    path = Path(spec).expanduser().resolve()
    weights = _from_file(path, canonical, str(path))
    if expected_hash:
        _check_digest(path, expected_hash)
    return weights
