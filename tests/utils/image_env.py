"""An image's Python environment without Docker: a clean venv in which deploy/install.sh, the
Dockerfile's own install line, installs the image's role. Its locked set is cached under the
cache dir, keyed by the lock file and the install script; the project is installed again (not
editable) on every call, so the code under test is what runs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
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


def _install(venv: Path, role: str, log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHON"] = str(venv / "bin" / "python")
    with log.open("ab") as out:
        result = subprocess.run(
            [str(INSTALL_SCRIPT), role], env=env, stdout=out, stderr=subprocess.STDOUT
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
