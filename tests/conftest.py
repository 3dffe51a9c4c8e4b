"""Session fixtures: the test models (converted once, cached) and one real Triton server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conversion.registry import converters
from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from picmetric.cli import build_parser, run_convert
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

TEST_SEED = 0
TEST_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of model_repository/ with every registered converter's models converted (random
    weights, seed 0). A Triton model belongs to the converter its name starts with."""
    models = [
        folder.name
        for folder in MODEL_REPOSITORY.iterdir()
        if folder.is_dir() and folder.name.startswith(tuple(converters()))
    ]
    repository = copy_models(models, tmp_path_factory.mktemp("model_repository"))
    args = ["convert", "all", "--weights", "random", "--seed", str(TEST_SEED)]
    run_convert(build_parser().parse_args([*args, "--repository", str(repository)]))
    return repository


@pytest.fixture(scope="session")
def triton(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """One real Triton server (the nvidia-pytriton binary, CPU) on free loopback ports."""
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    log_file = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    with TritonServer(model_repository, ports, log_file=log_file) as server:
        yield server


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photos from scikit-image."""
    return sample_photos(TEST_PHOTOS)
