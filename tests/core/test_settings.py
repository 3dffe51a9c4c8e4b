"""Every PICMETRIC_ variable is read through a settings class: the shared ones in core/settings.py,
the gateway's in gateway/settings.py, which extends them. A read anywhere else (os.environ,
os.getenv, a second settings class with the prefix) is found here, in any module of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT
from core.settings import ClientSettings, CommonSettings

PREFIX = "PICMETRIC_"
PACKAGES = ("core", "picmetric", "conversion", "gateway", "benchmarks", "model_repository")
SETTINGS = PROJECT_ROOT / "core" / "settings.py"


def _names_prefix(node: ast.AST) -> bool:
    """A string (or the start of an f-string) that names a PICMETRIC_ variable."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith(PREFIX)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _names_prefix(node.values[0])
    return False


def _reads_environment(node: ast.AST) -> bool:
    """`os.environ[...]`, `os.environ.get(...)`, `os.getenv(...)`, `environ.pop(...)` and so on."""
    target = node.value if isinstance(node, ast.Subscript) else getattr(node, "func", None)
    text = ast.unparse(target) if target is not None else ""
    return "environ" in text or "getenv" in text


def settings_reads(source: str) -> list[int]:
    """Lines of `source` that read a PICMETRIC_ variable other than through the settings."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _reads_environment(node):
            if _names_prefix(node.slice):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            if _reads_environment(node) and any(_names_prefix(a) for a in node.args):
                lines.append(node.lineno)
            if any(k.arg == "env_prefix" and _names_prefix(k.value) for k in node.keywords):
                lines.append(node.lineno)
    return lines


def test_no_picmetric_variable_is_read_outside_the_settings() -> None:
    files = [path for package in PACKAGES for path in (PROJECT_ROOT / package).rglob("*.py")]
    assert len(files) > 100, "the project's modules were found"
    found = {
        f"{path.relative_to(PROJECT_ROOT)}:{line}"
        for path in files
        if path != SETTINGS
        for line in settings_reads(path.read_text(encoding="utf-8"))
    }
    assert not found, f"read these through core/settings.py or gateway/settings.py: {found}"
    assert settings_reads(SETTINGS.read_text(encoding="utf-8")), "the settings themselves are found"


def test_the_check_finds_every_way_of_reading_the_environment() -> None:
    reads = [
        'os.environ.get("PICMETRIC_API_KEY")',
        'os.environ["PICMETRIC_API_KEY"]',
        'os.getenv("PICMETRIC_API_KEY", "")',
        'environ.pop(f"PICMETRIC_{name}")',
        'SettingsConfigDict(env_prefix="PICMETRIC_")',
    ]
    for read in reads:
        assert settings_reads(f"import os\nx = {read}\n") == [2], read
    assert settings_reads('import os\nx = os.environ.get("XDG_CACHE_HOME")\n') == []
    assert settings_reads('message = "set PICMETRIC_S3_BUCKET"\n') == []


def test_settings_read_a_dot_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the environment: `.env` in the working directory too, for every command."""
    (tmp_path / ".env").write_text(
        "PICMETRIC_TRITON_ADMIN_KEY=from-dot-env\nPICMETRIC_API_KEY=client-key\n"
        f"PICMETRIC_MODEL_REPOSITORY={tmp_path}\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("TRITON_ADMIN_KEY", "API_KEY", "MODEL_REPOSITORY"):
        monkeypatch.delenv(PREFIX + name, raising=False)
    common = CommonSettings()
    assert common.triton_admin_key == "from-dot-env"
    assert common.model_repository == tmp_path
    assert ClientSettings().api_key == "client-key"
