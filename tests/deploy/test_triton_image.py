"""One Triton release everywhere: compose, the chart (default and production values) and
bootstrap.sh name the same NGC tag, the chart pins a digest when given one, and the local
wheel's server listens on loopback unless asked."""

from __future__ import annotations

import re

import yaml

from core.paths import PROJECT_ROOT
from picmetric.triton_server import TritonServer
from tests.deploy.test_compose import SERVICES, interpolate
from tests.utils.helm import CHART, load_yaml, render

RELEASE = "nvcr.io/nvidia/tritonserver:25.11-py3"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _release_tags() -> dict[str, str]:
    values = load_yaml(CHART / "values.yaml")["triton"]["image"]
    production = load_yaml(CHART / "ci" / "production-values.yaml")["triton"]["image"]
    (bootstrap,) = re.findall(
        r"^TRITON_IMAGE=(\S+)$", (PROJECT_ROOT / "bootstrap.sh").read_text(), re.M
    )
    return {
        "compose": interpolate(SERVICES["triton"]["image"], {}),
        "compose trt-cache-owner": interpolate(SERVICES["trt-cache-owner"]["image"], {}),
        "chart": f"{values['repository']}:{values['tag']}",
        "production values tag": f"{values['repository']}:{production['tag']}",
        "bootstrap.sh": bootstrap,
        "picmetric gpu hint": RELEASE
        if RELEASE in (PROJECT_ROOT / "picmetric/gpu.py").read_text()
        else "",
    }


def test_compose_chart_and_bootstrap_name_the_same_triton_release() -> None:
    assert _release_tags() == dict.fromkeys(_release_tags(), RELEASE)


def test_the_digest_pins_the_image_when_given() -> None:
    def image(component: str, *args: str) -> str:
        (deployment,) = [
            o
            for o in render(*args)
            if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(component)
        ]
        (first,) = deployment["spec"]["template"]["spec"]["containers"]
        return str(first["image"])

    assert image("-triton") == RELEASE
    assert image("-triton", "--set", f"triton.image.digest={DIGEST}") == f"{RELEASE}@{DIGEST}"
    gateway = image("-gateway", "--set", f"gateway.image.digest={DIGEST}")
    assert gateway == f"picmetric-gateway:0.1.0@{DIGEST}"
    digest = "@" + DIGEST
    pinned = interpolate(SERVICES["triton"]["image"], {"PICMETRIC_TRITON_DIGEST": digest})
    assert pinned == RELEASE + digest


def test_the_local_triton_listens_on_loopback_unless_asked() -> None:
    command, _ = TritonServer().command()
    addresses = [arg for arg in command if re.match(r"--(http|grpc|metrics)-address=", arg)]
    assert sorted(a.split("=")[1] for a in addresses) == ["127.0.0.1"] * 3


def test_compose_overlay_files_parse() -> None:
    for name in ("docker-compose.triton-ports.yml",):
        assert yaml.safe_load((PROJECT_ROOT / name).read_text())["services"]
