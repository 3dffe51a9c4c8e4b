#!/bin/sh
# The one install line of each image: exactly its role's locked set (requirements/ROLE.txt, every
# file checked against its hash, wheels only), then the project itself without dependencies and
# not editable. The Dockerfile runs it, and so does the test that starts each image's environment
# in a clean venv (tests/deploy/test_image_env.py).
#   deploy/install.sh gateway|convert       (PYTHON=/path/to/python to install elsewhere)
set -eu
role=${1:?usage: deploy/install.sh gateway|convert}
python=${PYTHON:-python}
cd "$(dirname "$0")/.."
"$python" -m pip install --require-hashes --only-binary=:all: -r "requirements/$role.txt"
"$python" -m pip install --no-deps .
