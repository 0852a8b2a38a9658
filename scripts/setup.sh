#!/usr/bin/env bash
# Create .venv and install the project's requirements (add --dev for the test tools).
set -euo pipefail
cd "$(dirname "$0")/.."
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r "$req"
.venv/bin/python -m pip install --quiet --no-deps -e .
