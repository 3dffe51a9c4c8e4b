"""Helpers for the committed model repository: copying its committed files elsewhere, and
importing a Triton Python model's maths without Triton (tests, benchmarks)."""

from __future__ import annotations

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


def load_module(path: Path, name: str) -> ModuleType:
    """Import a Python file from the repository (a Triton model's pure functions) as `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
