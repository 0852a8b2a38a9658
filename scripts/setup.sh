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
# CodeBLEU's package pins tree-sitter<0.23 but runs on the tree-sitter we use (tested in
# tests/test_evaluate.py), so it is installed without its dependencies.
.venv/bin/python -m pip install --quiet --no-deps codebleu==0.7.0
# Browser tests drive Debian's Chromium through Playwright (never `playwright install`); PNG
# exports of results drive it through kaleido.
if [ "$req" = requirements.txt ] && ! command -v chromium >/dev/null; then
    echo "note: PNG exports of results need a Chromium (apt-get install chromium); md, tex and csv do not" >&2
elif [ "$req" = requirements-dev.txt ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
    else
        echo "note: install Debian's chromium (apt-get install chromium) to run the browser tests" >&2
    fi
fi
