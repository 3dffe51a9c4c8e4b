"""The shell scripts (bootstrap.sh, .ci/run, the install and lock scripts) under shellcheck, and
the parts of `bootstrap.sh deploy` that need no Docker, run by bash from the script itself
(sourced, it only defines its functions): the secrets in .env, the failed containers' report,
the proof analysis; `bootstrap.sh serve` reading its options and checking its ports before it
converts anything."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from core.paths import PROJECT_ROOT
from tests.utils.commands import run_tool
from tests.utils.ports import free_port

BOOTSTRAP = PROJECT_ROOT / "bootstrap.sh"
SECRETS = (
    "POSTGRES_PASSWORD",
    "POSTGRES_APP_PASSWORD",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "PICMETRIC_TRITON_ADMIN_KEY",
)


def test_bootstrap_is_clean_under_shellcheck() -> None:
    run_tool("shellcheck", "bootstrap.sh", ".ci/run", "deploy/install.sh", "requirements/lock.sh")


def bootstrap(script: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash after sourcing bootstrap.sh, in `cwd`."""
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    command = ["bash", "-c", f'source "{BOOTSTRAP}" && {script}']
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def dot_env(folder: Path) -> dict[str, str]:
    lines = (folder / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_deploy_writes_every_secret_once_and_shows_the_api_key_once(tmp_path: Path) -> None:
    first = bootstrap("ensure_env_file", tmp_path)
    assert first.returncode == 0, first.stderr
    env = dot_env(tmp_path)
    assert set(env) == {*SECRETS, "PICMETRIC_API_KEYS", "PICMETRIC_ALLOWED_HOSTS"}
    hosts = env.pop("PICMETRIC_ALLOWED_HOSTS")
    this_host = subprocess.run(["hostname", "-f"], capture_output=True, text=True).stdout.strip()
    assert hosts == this_host and hosts in first.stdout, "this host's name, said"
    for value in env.values():
        assert len(value) >= 24 and value.isalnum(), "random, and safe in a Triton flag"
    assert len(set(env.values())) == len(env)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert env["PICMETRIC_API_KEYS"] in first.stdout and "shown only now" in first.stdout
    assert not any(env[name] in first.stdout for name in SECRETS)

    again = bootstrap("ensure_env_file", tmp_path)
    assert again.returncode == 0, again.stderr
    assert dot_env(tmp_path) == {**env, "PICMETRIC_ALLOWED_HOSTS": hosts}, "made once"
    assert env["PICMETRIC_API_KEYS"] not in again.stdout


def test_deploy_keeps_what_the_operator_set(tmp_path: Path) -> None:
    """An existing .env is tightened to 600; a name already there is kept, even empty."""
    (tmp_path / ".env").write_text("PICMETRIC_API_KEYS=\nPICMETRIC_ALLOW_ANONYMOUS=true\n")
    (tmp_path / ".env").chmod(0o644)
    done = bootstrap("ensure_env_file && env_value PICMETRIC_ALLOW_ANONYMOUS", tmp_path)
    assert done.returncode == 0, done.stderr
    env = dot_env(tmp_path)
    assert env["PICMETRIC_API_KEYS"] == "" and set(SECRETS) <= set(env)
    assert "API key" not in done.stdout and done.stdout.rstrip().endswith("true")
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_deploy_takes_the_host_names_it_is_given(tmp_path: Path) -> None:
    done = bootstrap("PICMETRIC_ALLOWED_HOSTS=photos.example.com ensure_env_file", tmp_path)
    assert done.returncode == 0, done.stderr
    assert dot_env(tmp_path)["PICMETRIC_ALLOWED_HOSTS"] == "photos.example.com"


def test_failed_services_are_those_not_running_healthy(tmp_path: Path) -> None:
    """`docker compose ps --all --format '{{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}'`."""
    ps = "\n".join(
        [
            "gateway|running|unhealthy|0",
            "grafana|running|healthy|0",
            "migrate|exited||0",
            "postgres|running|healthy|0",
            "prometheus|running||0",
            "triton|restarting||1",
        ]
    )
    done = bootstrap(f"printf '%s\\n' '{ps}' | failed_services", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gateway", "triton"]
    failed_migration = bootstrap("echo 'migrate|exited||1' | failed_services", tmp_path)
    assert failed_migration.stdout.split() == ["migrate"]


def _fake(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text("#!/usr/bin/env bash\n" + script)
    tool.chmod(0o755)


def test_report_names_the_failed_container_with_its_last_log_lines(tmp_path: Path) -> None:
    """Against a fake `docker` that answers `compose ps` and `compose logs` as compose does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(
        bin_dir,
        "docker",
        """case "$*" in
  *"ps --all --format"*) printf 'gateway|running|healthy|0\\ntriton|exited||1\\n' ;;
  *"ps --all"*) echo "NAME  STATUS" ;;
  *"logs --no-color --tail 40 triton"*) echo "E1204 failed to load 'resnet50'" ;;
  *) echo "unexpected: docker $*" >&2; exit 1 ;;
esac
""",
    )
    done = bootstrap("report_failure", tmp_path, f"{bin_dir}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    assert "==> triton failed" in done.stderr and "failed to load 'resnet50'" in done.stderr
    assert "gateway failed" not in done.stderr and "unexpected" not in done.stderr


def test_proof_analysis_sends_the_first_api_key_and_prints_the_summary(tmp_path: Path) -> None:
    """A fake `curl` (the gateway) checks the key and answers an analysis; a fake `docker`
    runs the gateway image's summary with this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / ".env").write_text("PICMETRIC_API_KEYS=first,second\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "try-it-page.png").write_bytes(b"png")
    answer = (
        '{"id": "a1", "cached": false, "image": {"width": 900, "height": 1114},'
        ' "summary": {"people": 0, "people_with_face": 0, "faces": 0, "objects": {}},'
        ' "results": {}, "models": []}'
    )
    _fake(
        bin_dir,
        "curl",
        f"""out=""; seen=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out=$2; shift ;; "X-API-Key: first") seen=1 ;; esac
  shift
done
[ -n "$seen" ] || {{ echo '{{"error": "unauthorized"}}' >"$out"; exit 22; }}
echo '{answer}' >"$out"
""",
    )
    python = f"PYTHONPATH={PROJECT_ROOT} {sys.executable}"
    _fake(bin_dir, "docker", f'shift 4; {python} "${{@:2}}"\n')
    path = f"{bin_dir}:{os.environ['PATH']}"
    done = bootstrap("prove_analysis", tmp_path, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "900x1114 photo, analysis a1" in done.stdout
    (tmp_path / ".env").write_text("PICMETRIC_API_KEYS=wrong\n")
    refused = bootstrap("prove_analysis", tmp_path, path)
    assert refused.returncode != 0 and "unauthorized" in refused.stderr


def test_deploy_makes_the_runtime_role_on_an_existing_database_once(tmp_path: Path) -> None:
    """Against a fake `docker`: PostgreSQL is started and waited for, then the init script runs
    in its container unless the role exists (a data volume from before the role)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    _fake(bin_dir, "docker", f'echo "$*" >> "{log}"\n')
    done = bootstrap("ensure_app_role", tmp_path, f"{bin_dir}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    up, execute = log.read_text().splitlines()
    assert up == "compose up -d --wait postgres"
    assert execute.startswith("compose exec -T postgres sh -c")
    assert (
        "rolname = 'picmetric_app'" in execute and "|| sh /docker-entrypoint-initdb.d/" in execute
    )
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "/docker-entrypoint-initdb.d/10-app-role.sh" in compose


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bootstrap.sh serve ARGS` with this interpreter's `picmetric` on PATH as the .venv's, and
    without what needs root or the network (making the .venv, apt-get): its options read, then
    (were they valid) the models converted and the service started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _fake(
        bin_dir,
        "picmetric",
        f'PYTHONPATH="{PROJECT_ROOT}" exec "{sys.executable}" -m picmetric "$@"\n',
    )
    script = (
        f"export PICMETRIC_OPS_PORT={free_port()}; ensure_venv() {{ :; }}; "
        'apt_ensure() { echo "Installing $*"; }; '  # said, not done
        f"serve {' '.join(args)}"
    )
    return bootstrap(script, tmp_path, f"{bin_dir}:{os.environ['PATH']}")


def test_serve_answers_help_at_once_without_converting(tmp_path: Path) -> None:
    started = time.perf_counter()
    helped = _serve(tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--http-port" in helped.stdout and "(default: 8080)" in helped.stdout
    assert "Converting" not in helped.stdout + helped.stderr
    assert "Installing" not in helped.stdout + helped.stderr
    assert time.perf_counter() - started < 5


def test_serve_stops_at_a_taken_port_before_converting_and_names_its_option(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = f"--grpc-port {free_port()} --metrics-port {free_port()} --port {free_port()}"
        refused = _serve(tmp_path, "--http-port", str(port), ports)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Converting" not in refused.stdout + refused.stderr
    assert "Installing" not in refused.stdout + refused.stderr
    assert f"port {port} on 127.0.0.1 is taken" in refused.stderr
    assert "choose another with --http-port." in refused.stderr
    wrong = _serve(tmp_path, "--http-port", "eighty")
    assert wrong.returncode == 2 and "invalid int value" in wrong.stderr
    assert "Converting" not in wrong.stdout + wrong.stderr
