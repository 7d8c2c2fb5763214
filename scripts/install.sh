#!/usr/bin/env bash
# One command installs everything into ./.venv (Python 3.11+): the bridge, its test tools and linters,
# at the exact versions of requirements.lock (how to regenerate it: README, "Development").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e .
