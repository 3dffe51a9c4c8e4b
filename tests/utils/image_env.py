"""An image's Python environment without Docker: a clean venv in which deploy/install.sh, the
Dockerfile's own install line, installs the image's role from what the Dockerfile's COPY lines
copy (so a file they miss is missed here too, and no build left-over of the checkout is
packaged). Its locked set is cached under the cache dir, keyed by the lock file and the install
script; the project is installed again (not editable) on every call, so the code under test is
what runs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from core.paths import PROJECT_ROOT, cache_dir

INSTALL_SCRIPT = PROJECT_ROOT / "deploy" / "install.sh"


def clean_environ(venv: Path, **extra: str) -> dict[str, str]:
    """What a container's process would see: the venv's bin first on PATH, no PYTHONPATH (the
    checkout must not stand in for the installed project), no other venv."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        **extra,
    }


def build_context(target: Path) -> Path:
    """What the Dockerfile's base stage COPYs into its WORKDIR, copied from the checkout into
    `target`."""
    for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, destination = line.split()[1:]
        for source in sources:
            into = target / destination
            copied = into / Path(source).name if destination.endswith("/") else into
            copied.parent.mkdir(parents=True, exist_ok=True)
            if (PROJECT_ROOT / source).is_dir():
                shutil.copytree(
                    PROJECT_ROOT / source, copied, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(PROJECT_ROOT / source, copied)
    return target


def _install(venv: Path, role: str, log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHON"] = str(venv / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="picmetric-image-") as folder, log.open("ab") as out:
        context = build_context(Path(folder))
        result = subprocess.run(
            [str(context / "deploy" / "install.sh"), role],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"deploy/install.sh {role} failed:\n{log.read_text()[-4000:]}")


def image_venv(role: str) -> Path:
    """The venv of the `role` image (gateway, convert) with the checkout installed in it."""
    digest = hashlib.sha256()
    for source in (PROJECT_ROOT / "requirements" / f"{role}.txt", INSTALL_SCRIPT):
        digest.update(source.read_bytes())
    digest.update(sys.version.encode())
    root = cache_dir() / "image-envs"
    root.mkdir(exist_ok=True)
    venv = root / f"{role}-{digest.hexdigest()[:12]}"
    log = root / f"{venv.name}.log"
    # venvs cannot move (absolute paths in their scripts): built in place, under a lock, and
    # marked complete at the end
    with (root / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            for stale in root.glob(f"{role}-*"):  # other locks' venvs: the convert one is 2 GB
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                elif stale.suffix == ".log":
                    stale.unlink(missing_ok=True)
            log.write_bytes(b"")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            _install(venv, role, log)
            (venv / ".complete").touch()
        else:
            _install(venv, role, log)  # the locked set is there: this reinstalls the project
    return venv


def run_in(venv: Path, *command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`command` from the venv's bin with a container's bare environment plus `env`."""
    return subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        cwd=cwd,
        env=clean_environ(venv, **env),
        capture_output=True,
        text=True,
        timeout=900,
    )
