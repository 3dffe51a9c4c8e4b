"""Installing a converted model from the cache into a model repository."""

from __future__ import annotations

from pathlib import Path

from conversion import export


def test_install_twice_leaves_the_files_and_nothing_else(tmp_path: Path) -> None:
    cached = tmp_path / "cache"
    cached.mkdir()
    (cached / export.MODEL_FILE).write_bytes(b"onnx")
    (cached / export.PROVENANCE_FILE).write_text("{}")
    version_dir = tmp_path / "repository" / "model" / "1"
    for _ in range(2):  # the second finds the same files already linked there
        export.install(cached, version_dir)
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(
        [export.MODEL_FILE, export.PROVENANCE_FILE]
    )
    assert (version_dir / export.MODEL_FILE).read_bytes() == b"onnx"
