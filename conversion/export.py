"""What every exporter shares: the conversion cache, validation, and installing a model into
the Triton repository with its provenance."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import numpy as np

from conversion.weights import Weights
from core.paths import cache_dir, publish_folder

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PROVENANCE_FILE = "provenance.json"


class ValidationError(RuntimeError):
    """An exported model disagrees with its source model; it was not installed."""


def cache_key(modules: Iterable[ModuleType], weights: Weights, options: dict[str, object]) -> str:
    """Hash of the converter code, the weights file and the conversion options."""
    h = hashlib.sha256()
    for module in modules:
        for source in _source_files(module):
            h.update(source.read_bytes())
    h.update(weights.sha256.encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _source_files(module: ModuleType) -> list[Path]:
    """A module's file; for a package (conversion.darknet), every Python file in it."""
    path = Path(str(module.__file__))
    return sorted(path.parent.rglob("*.py")) if hasattr(module, "__path__") else [path]


def compare_outputs(name: str, got: np.ndarray, want: np.ndarray, atol: float) -> float:
    """Max abs difference between the exported and the source model; raises above `atol`."""
    if got.shape != want.shape:
        raise ValidationError(
            f"{name}: ONNX output shape {got.shape} differs from the source model's {want.shape}; "
            "the model was not installed."
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    if diff > atol:
        raise ValidationError(
            f"{name}: ONNX output differs from the source model (shape {got.shape} vs "
            f"{want.shape}, max abs diff {diff:.3g} > {atol:g}); the model was not installed."
        )
    log.info("%s: ONNX matches the source model (max abs diff %.2g)", name, diff)
    return diff


def convert_cached(
    model: str,
    key: str,
    weights: Weights,
    export: Callable[[Path], dict[str, object]],
    repository: Path,
) -> Path:
    """Export `model` into the cache unless this key is cached already, then install it into
    `repository/<model>/1/`. `export(path)` writes and validates the ONNX file and returns extra
    provenance fields."""
    cached = cache_dir() / "models" / model / key
    if not (cached / PROVENANCE_FILE).exists():
        log.info("Converting %s (%s); this takes a while", model, weights.describe())
        started = time.perf_counter()
        staging = cached.with_name(f"{key}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            extra = export(staging / MODEL_FILE)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        record = {
            "model": model,
            "cache_key": key,
            "weights": weights.provenance(),
            "converted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "conversion_seconds": round(time.perf_counter() - started, 1),
            **extra,
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        publish_folder(staging, cached)
        log.info("Converted %s in %.0f s", model, record["conversion_seconds"])
    else:
        log.info("%s is cached (%s)", model, weights.describe())
    return install(cached, repository / model / "1")


def install(source: Path, version_dir: Path) -> Path:
    """Hard-link (or copy) the cached files into a model version folder, atomically per file."""
    version_dir.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, PROVENANCE_FILE):
        target = version_dir / name
        if target.exists() and os.path.samefile(source / name, target):
            continue  # installed already; renaming a link onto itself would leave the link behind
        tmp = version_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source / name, tmp)
        except OSError:
            shutil.copy2(source / name, tmp)
        os.replace(tmp, target)
    log.info("Installed %s", version_dir / MODEL_FILE)
    return version_dir / MODEL_FILE
