"""`picmetric serve`'s arguments are read, and its ports checked, before anything starts: a taken
port is named with the option that changes it (what ./bootstrap.sh serve runs before converting
the models), and the README names every option it passes on; every command's help says what it
does, every option its default (never the API key), and --version the installed version."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from core.paths import PROJECT_ROOT
from picmetric.cli import build_parser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _picmetric(*args: str, ops_port: int | None = None) -> subprocess.CompletedProcess[str]:
    """`picmetric` with its operations port on a free port (8081 may be another's here)."""
    command = [sys.executable, "-m", "picmetric", *args]
    env = {**os.environ, "PICMETRIC_OPS_PORT": str(ops_port or _free_port())}
    for name in ("PICMETRIC_API_KEYS", "PICMETRIC_ALLOW_ANONYMOUS"):
        env.pop(name, None)
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


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser, sub-commands' too, by its command line."""
    yield " ".join(("picmetric", *path)), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_says_what_it_does_and_its_default() -> None:
    silent = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    for command, parser in _parsers(build_parser()):
        assert parser.description, f"{command} --help does not say what it does"
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, silent):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert action.help, f"{command} {name} has no help"
            has_default = action.default is not None and action.default is not False
            if has_default and (action.option_strings or action.nargs == "?"):
                text = formatter._expand_help(action)
                assert "default" in text, f"{command} {name}: {text!r} does not name its default"


def test_help_never_shows_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICMETRIC_API_KEY", "secret-key-0123456789")
    for command, parser in _parsers(build_parser()):
        assert "secret-key-0123456789" not in parser.format_help(), command


def test_version_is_the_installed_package_version() -> None:
    run = _picmetric("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"picmetric {version('picmetric')}"


def test_the_readme_names_every_option_serve_passes_through() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    paragraph = re.search(r"`\./bootstrap\.sh serve` passes its options.*?\n\n", readme, re.S)
    assert paragraph is not None, "README.md no longer says what ./bootstrap.sh serve passes on"
    named = set(re.findall(r"`(?:picmetric serve )?(--[a-z-]+)`", paragraph.group(0)))
    (serve,) = (parser for command, parser in _parsers(build_parser()) if command.endswith("serve"))
    options = {o for a in serve._actions for o in a.option_strings if o.startswith("--")}
    assert options - {"--help"} == named


def test_serve_check_refuses_what_serve_would_refuse_once_started() -> None:
    ports = [x for name in FLAGS for x in (name, str(_free_port()))]
    exposed = _picmetric("serve", "--check", *ports, "--host", "0.0.0.0")
    assert exposed.returncode == 1 and "Refusing to listen on 0.0.0.0" in exposed.stderr
    port = _free_port()
    same = _picmetric("serve", "--check", *ports, "--port", str(port), ops_port=port)
    assert same.returncode == 1 and "PICMETRIC_OPS_PORT" in same.stderr, same.stderr
