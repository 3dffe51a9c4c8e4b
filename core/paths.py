"""Where things live: the checkout's model repository and the per-user cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.settings import CommonSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The checkout's, unless PICMETRIC_MODEL_REPOSITORY says otherwise (core/settings.py).
MODEL_REPOSITORY = CommonSettings().model_repository or PROJECT_ROOT / "model_repository"


def cache_dir() -> Path:
    """Downloads, converted models and the assembled Triton backends live here, outside the
    checkout, so a fresh clone reuses them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "picmetric"
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish_folder(staging: Path, target: Path) -> None:
    """Move a finished staging folder into place atomically. If a concurrent run got there
    first (same key, so same content), keep theirs and drop ours."""
    try:
        os.replace(staging, target)
    except OSError:
        if not target.exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
