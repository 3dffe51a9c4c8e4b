"""Helpers for the committed model repository: copying its committed files elsewhere, and
importing a Triton Python model's maths without Triton (tests, benchmarks)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from core.paths import MODEL_REPOSITORY

GENERATED = ("*.onnx", "provenance.json", "__pycache__")


def copy_models(models: Iterable[str], target: Path) -> Path:
    """The committed files of `models` (configs, labels, Python models; nothing converted) in
    `target`, which becomes a model repository to convert into."""
    for model in models:
        shutil.copytree(
            MODEL_REPOSITORY / model, target / model, ignore=shutil.ignore_patterns(*GENERATED)
        )
    return target


def load_model_module(model: str, module: str) -> ModuleType:
    """`model_repository/<model>/1/<module>.py` (a Triton Python model's pure functions) imported
    without Triton. As Triton imports it, it is a module of its folder's package, so its relative
    imports of the files beside it work; Triton's package is named `1`, this one
    `triton_model_<model>` (not `<model>`, which may be a library's name, e.g. mtcnn)."""
    package = f"triton_model_{model}"
    folder = MODEL_REPOSITORY / model / "1"
    if package not in sys.modules:
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        sys.modules[package] = importlib.util.module_from_spec(spec)
    loaded = sys.modules[package].__path__
    if list(loaded) != [str(folder)]:
        raise ImportError(f"{package} is already imported from {loaded[0]}, not {folder}")
    return importlib.import_module(f"{package}.{module}")
