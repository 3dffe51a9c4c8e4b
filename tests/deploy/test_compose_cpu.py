"""docker-compose.cpu.yml, the CPU host's overlay on docker-compose.yml, parsed as compose merges
it (no Docker engine runs here): the same Triton without a GPU."""

from __future__ import annotations

from typing import Any

import yaml

from core.paths import PROJECT_ROOT

BASE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


class _Reset:
    """Compose's `!reset` tag: the attribute goes from the merged file."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
CPU = yaml.load((PROJECT_ROOT / "docker-compose.cpu.yml").read_text(), Loader=_ComposeLoader)


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge for what the overlay uses: mappings merge, `command` is replaced,
    `!reset` removes."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, _Reset):
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


TRITON = merged(BASE, CPU)["services"]["triton"]


def test_cpu_overlay_changes_only_triton() -> None:
    assert set(CPU["services"]) == {"triton"}


def test_cpu_triton_asks_for_no_gpu_and_exports_no_gpu_metrics() -> None:
    assert "deploy" not in TRITON
    assert "--allow-gpu-metrics=true" not in TRITON["command"]


def test_cpu_triton_command_is_the_gpu_ones_without_gpu_metrics() -> None:
    """Compose replaces the whole command, so every other flag (the admin API's lock first of
    all) must be copied exactly: a flag added to docker-compose.yml fails here until it is."""
    gpu = [flag for flag in BASE["services"]["triton"]["command"] if "gpu" not in flag]
    assert TRITON["command"] == gpu


def test_cpu_triton_keeps_the_image_repository_ports_and_healthcheck() -> None:
    base = BASE["services"]["triton"]
    for key in ("image", "volumes", "shm_size", "restart", "user", "cap_drop", "read_only"):
        assert TRITON[key] == base[key], key
    assert "ports" not in TRITON
    assert TRITON["healthcheck"]["test"] == base["healthcheck"]["test"]
    assert TRITON["healthcheck"]["start_period"] == "5m"
