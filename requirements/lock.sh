#!/usr/bin/env bash
# Regenerate the images' lock files from pyproject.toml's sets, with every file's hash, from PyPI
# alone (whatever index this machine's pip is configured with), for CPython 3.11 on x86-64 Linux
# (the Dockerfile's base image). Needs uv (pip install uv, in any venv):
#   requirements/lock.sh [extra uv pip compile options, e.g. --upgrade-package fastapi]
set -euo pipefail
cd "$(dirname "$0")/.."
for role in gateway convert; do
  uv pip compile pyproject.toml --extra "$role" \
    --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --index-url https://pypi.org/simple --no-config \
    --custom-compile-command "requirements/lock.sh" \
    --output-file "requirements/$role.txt" --quiet "$@"
done
