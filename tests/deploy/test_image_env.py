"""The images' environments, started: no Docker engine runs here, so each image's Python
environment is built as its Dockerfile stage builds it (deploy/install.sh in a clean venv) and
the image's own commands run from it, with a container's bare environment. Not covered: the
base image's OS packages, the non-root user, and Docker's own build (README, Deployment)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import httpx
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import create_engine, text

from core.paths import MODEL_REPOSITORY, PROJECT_ROOT
from picmetric.triton_server import TritonServer
from tests.utils.image_env import clean_environ, image_venv, run_in
from tests.utils.postgres import fresh_database, postgres_server
from tests.utils.real_photos import jpeg_bytes
from tests.utils.services import gateway_process

ROLES = ("gateway", "convert")

NOT_IN_THE_GATEWAY = ("pytriton", "tritonserver", "onnxruntime", "onnx", "tensorflow")
NOT_IN_THE_CONVERTER = ("pytriton", "tritonserver", "fastapi", "uvicorn", "psycopg2")


def _importable(venv: Path, modules: tuple[str, ...], cwd: Path) -> list[str]:
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    result = run_in(venv, "python", "-c", probe, *modules, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _locked(role: str) -> dict[str, str]:
    lock = (PROJECT_ROOT / "requirements" / f"{role}.txt").read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock, re.MULTILINE)
    }


@pytest.mark.parametrize("role", ROLES)
def test_lock_file_pins_every_requirement_of_its_set(role: str) -> None:
    """pyproject.toml changed without requirements/lock.sh: the image would not get it."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked(role)
    for line in [*project["dependencies"], *project["optional-dependencies"][role]]:
        requirement = Requirement(line)
        version = locked.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in requirements/{role}.txt"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{role}.txt pins {requirement.name}=={version}, outside {requirement}; "
            "run requirements/lock.sh"
        )


def test_dockerfile_stages_use_the_install_script_on_a_pinned_base() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+) AS base$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    for role in ROLES:
        assert re.search(rf"^FROM base AS {role}\nRUN deploy/install.sh {role}\b", dockerfile, re.M)
    assert "pip install" not in dockerfile  # one install line: deploy/install.sh's


@pytest.mark.integration
@pytest.mark.slow
def test_gateway_image_migrates_postgresql_serves_and_stores_an_analysis(
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    venv = image_venv("gateway")
    assert _importable(venv, NOT_IN_THE_GATEWAY, tmp_path) == []
    assert "migrate" in _ok(run_in(venv, "picmetric", "--help", cwd=tmp_path))
    with postgres_server() as server, fresh_database(server) as database_url:
        _ok(run_in(venv, "picmetric", "migrate", cwd=tmp_path, PICMETRIC_DATABASE_URL=database_url))
        settings = {
            "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
            "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
            "PICMETRIC_DATABASE_URL": database_url,
            "PICMETRIC_MIGRATE_ON_START": "false",  # as compose and the chart run it
        }
        picmetric = [str(venv / "bin" / "picmetric")]
        log = tmp_path / "gateway.log"
        with gateway_process(settings, log, picmetric, clean_environ(venv)) as url:
            ready = httpx.get(f"{url}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            photo = jpeg_bytes(photos["astronaut"])
            answer = httpx.post(
                f"{url}/v1/analyze",
                files={"file": ("astronaut.jpg", photo, "image/jpeg")},
                timeout=120,
            )
            assert answer.status_code == 200, answer.text + log.read_text()[-3000:]
        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM analyses")).scalar_one()
        finally:
            engine.dispose()
        assert stored == 1


@pytest.mark.integration
@pytest.mark.slow
def test_convert_image_converts_mtcnn(tmp_path: Path) -> None:
    venv = image_venv("convert")
    assert _importable(venv, NOT_IN_THE_CONVERTER, tmp_path) == []
    assert "mtcnn" in _ok(run_in(venv, "picmetric", "convert", "--help", cwd=tmp_path))
    repository = tmp_path / "model_repository"
    convert = run_in(
        venv,
        "picmetric",
        "convert",
        "mtcnn",
        f"--repository={repository}",
        cwd=tmp_path,
        # as compose mounts the checkout's repository; a fresh cache: a real conversion
        PICMETRIC_MODEL_REPOSITORY=str(MODEL_REPOSITORY),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    _ok(convert)
    for network in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"):
        assert (repository / network / "1" / "model.onnx").stat().st_size > 0
