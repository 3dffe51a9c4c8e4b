"""`picmetric serve`'s arguments are read, and its ports checked, before anything starts: a taken
port is named with the option that changes it (what ./bootstrap.sh serve runs before converting
the models); every command's help says what it does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _picmetric(*args: str) -> subprocess.CompletedProcess[str]:
    """`picmetric` with its operations port on a free port (8081 may be another's here)."""
    command = [sys.executable, "-m", "picmetric", *args]
    env = {**os.environ, "PICMETRIC_OPS_PORT": str(_free_port())}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


FLAGS = ("--http-port", "--grpc-port", "--metrics-port", "--port")


@pytest.mark.parametrize("option", FLAGS)
def test_serve_names_the_option_of_a_taken_port_before_starting(option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = []  # the other ports free ones, so only `option` clashes
        for name in FLAGS:
            ports += [name, str(port if name == option else _free_port())]
        run = _picmetric("serve", "--check", *ports)
    assert run.returncode == 1, run.stderr
    assert f"port {port} on 127.0.0.1 is taken" in run.stderr
    assert f"choose another with {option}." in run.stderr
    assert "Triton stopped" not in run.stderr and "Traceback" not in run.stderr


def test_serve_check_passes_on_free_ports_and_help_is_quick() -> None:
    ports = [x for name in FLAGS for x in (name, str(_free_port()))]
    run = _picmetric("serve", "--check", *ports)
    assert run.returncode == 0, run.stderr
    started = time.perf_counter()
    helped = _picmetric("serve", "--help")
    assert helped.returncode == 0 and "run Triton, the gateway" in helped.stdout
    assert "(default: 8080)" in helped.stdout and "--check" in helped.stdout
    assert time.perf_counter() - started < 5  # it converts nothing


@pytest.mark.parametrize("command", ["analyze", "show", "models", "samples", "serve", "convert"])
def test_every_command_help_says_what_it_does(command: str) -> None:
    run = _picmetric(command, "--help")
    assert run.returncode == 0
    description = run.stdout.split("\n\n")[1]
    assert len(description) > 20 and not description.startswith(("options:", "positional")), (
        run.stdout
    )
