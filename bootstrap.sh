#!/usr/bin/env bash
# One-command set-up for Picmetric's inference service.
#   ./bootstrap.sh serve   create .venv, convert the models (cached), start Triton (+ gateway)
#   ./bootstrap.sh test    create .venv, lint, type-check, convert what tests need, run pytest
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}

say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install Debian packages whose command is missing: apt_ensure COMMAND_PATH PACKAGE...
apt_ensure() {
  local probe=$1
  shift
  if [ ! -e "$probe" ] && ! command -v "$probe" >/dev/null 2>&1; then
    say "Installing $* from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  fi
}

# Create the virtual environment and (re)install the project when pyproject.toml changed.
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.picmetric-installed"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "Installing Picmetric and its dependencies into $VENV (a few minutes the first time)"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".[convert,test]"
    echo "$want" >"$stamp"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
}

serve() {
  ensure_venv
  say "Converting models (cached; --weights ${PICMETRIC_WEIGHTS:-auto})"
  picmetric convert all --weights "${PICMETRIC_WEIGHTS:-auto}"
  say "Starting the service"
  exec picmetric serve "$@"
}

run_tests() {
  ensure_venv
  apt_ensure /usr/lib/postgresql/15/bin/initdb postgresql
  say "Linting (ruff) and type-checking (mypy)"
  ruff check .
  mypy
  say "Converting the test models (random weights, seed 0; cached)"
  local scratch
  scratch=$(mktemp -d)
  picmetric convert all --weights random --seed 0 --repository "$scratch"
  rm -rf "$scratch"
  say "Running the test suite"
  pytest "$@"
}

case "${1:-}" in
  serve) shift; serve "$@" ;;
  test) shift; run_tests "$@" ;;
  *)
    echo "usage: $0 serve|test [args]" >&2
    exit 2
    ;;
esac
