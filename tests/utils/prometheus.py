"""Debian's Prometheus (installed by ./bootstrap.sh test) scraping local targets every second."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.utils.ports import free_port
from tests.utils.services import wait_for_http


@contextmanager
def prometheus_server(
    targets: Mapping[str, str], folder: Path, flags: Sequence[str] = ()
) -> Iterator[str]:
    """A Prometheus scraping each `targets` job's host:port every second, started with `flags`
    as well; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; ./bootstrap.sh test installs Debian's package")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={address}",
                *flags,
            ],
            stdout=out,
            stderr=out,
        )
    try:
        wait_for_http(f"http://{address}/-/ready", process, log)
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(30)
